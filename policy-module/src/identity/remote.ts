import type { JsonWebKey } from "node:crypto";
import type { Logger } from "pino";
import { PeerError, type PeerClient } from "../directory/index.ts";
import { AttestationError, verifyAttestation, type Attestation } from "./attestation.ts";
import type { Verification } from "./verification.ts";

export type SignedAttestation = Attestation & { jws: string };

export const ATTESTATION_PATH = "/_medmesh/identity/v1/attestations/";

/** What asking a user's organisation gave: `definitive` is false when it could not be asked. */
export interface RemoteAnswer {
  attestation: SignedAttestation | undefined;
  definitive: boolean;
}

/**
 * Whether another organisation's user is a verified clinician: that organisation's signed
 * attestation, checked with the key the trust list holds for it, remembered until it expires or
 * for one refresh interval, whichever is shorter. A revocation notice from that organisation
 * (recorded in the store) voids every attestation it issued before, and drops the remembered one
 * on every instance (`forget`, through the store's notification). Unreachable, unknown key, forged,
 * revoked or expired: not verified (fail closed).
 */
export function createRemoteVerification(deps: {
  peers: Pick<PeerClient, "getJson">;
  trust: { isTrusted(server: string): boolean; attestationKeys(server: string): JsonWebKey[] };
  refreshMs: number;
  timeoutMs: number;
  /** The latest revocation the user's organisation sent about them (received_revocations). */
  revokedAt(userId: string): Promise<Date | undefined>;
  log: Logger;
}): Verification & {
  attestation(userId: string): Promise<SignedAttestation | undefined>;
  /** Asks the user's organisation again, whatever is remembered. */
  refresh(userId: string): Promise<RemoteAnswer>;
  forget(userId: string): void;
} {
  const cache = new Map<string, { attestation: SignedAttestation | undefined; until: number }>();
  const ask = async (userId: string): Promise<RemoteAnswer> => {
    const server = userId.slice(userId.indexOf(":") + 1);
    if (!deps.trust.isTrusted(server)) return { attestation: undefined, definitive: true };
    let found: SignedAttestation | undefined;
    try {
      const body = (await deps.peers.getJson(
        server,
        ATTESTATION_PATH + encodeURIComponent(userId),
        deps.timeoutMs,
      )) as {
        attestation?: unknown;
      };
      if (typeof body.attestation !== "string") throw new AttestationError("no attestation in the answer");
      const claims = verifyAttestation(
        body.attestation,
        { issuer: server, subject: userId },
        deps.trust.attestationKeys(server),
      );
      const revoked = await deps.revokedAt(userId);
      if (revoked && claims.iat * 1000 <= revoked.getTime())
        throw new AttestationError(`issued before ${server} revoked it`);
      found = { ...claims, jws: body.attestation };
    } catch (err) {
      if (!(err instanceof PeerError && err.status === 404)) {
        deps.log.warn(
          { user_id: userId, error: (err as Error).message },
          "remote attestation not usable; not verified",
        );
        // Unreachable (or the store could not say): ask again next time.
        if (!(err instanceof AttestationError)) return { attestation: undefined, definitive: false };
      }
    }
    const until = Math.min(Date.now() + deps.refreshMs, found ? found.exp * 1000 : Infinity);
    cache.set(userId, { attestation: found, until });
    return { attestation: found, definitive: true };
  };
  const attestation = async (userId: string): Promise<SignedAttestation | undefined> => {
    const hit = cache.get(userId);
    if (hit && hit.until > Date.now()) return hit.attestation;
    return (await ask(userId)).attestation;
  };
  return {
    attestation,
    refresh: (userId) => {
      cache.delete(userId);
      return ask(userId);
    },
    forget: (userId) => {
      cache.delete(userId);
    },
    isVerified: async (userId) => (await attestation(userId)) !== undefined,
  };
}
