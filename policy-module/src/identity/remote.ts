import type { JsonWebKey } from "node:crypto";
import type { Logger } from "pino";
import { PeerError, type PeerClient } from "../directory/index.ts";
import { AttestationError, verifyAttestation, type Attestation } from "./attestation.ts";
import type { Verification } from "./verification.ts";

export type SignedAttestation = Attestation & { jws: string };

export const ATTESTATION_PATH = "/_medmesh/identity/v1/attestations/";

/**
 * Whether another organisation's user is a verified clinician: that organisation's signed
 * attestation, checked with the key the trust list holds for it, remembered until it expires or
 * for one refresh interval, whichever is shorter (so a revocation shows within one interval).
 * Unreachable, unknown key, forged or expired: not verified (fail closed).
 */
export function createRemoteVerification(deps: {
  peers: PeerClient;
  trust: { isTrusted(server: string): boolean; attestationKeys(server: string): JsonWebKey[] };
  refreshMs: number;
  timeoutMs: number;
  log: Logger;
}): Verification & { attestation(userId: string): Promise<SignedAttestation | undefined> } {
  const cache = new Map<string, { attestation: SignedAttestation | undefined; until: number }>();
  const attestation = async (userId: string): Promise<SignedAttestation | undefined> => {
    const server = userId.slice(userId.indexOf(":") + 1);
    if (!deps.trust.isTrusted(server)) return undefined;
    const hit = cache.get(userId);
    if (hit && hit.until > Date.now()) return hit.attestation;
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
      found = { ...claims, jws: body.attestation };
    } catch (err) {
      if (!(err instanceof PeerError && err.status === 404)) {
        deps.log.warn(
          { user_id: userId, error: (err as Error).message },
          "remote attestation not usable; not verified",
        );
        if (!(err instanceof AttestationError)) return undefined; // unreachable: ask again next time
      }
    }
    const until = Math.min(Date.now() + deps.refreshMs, found ? found.exp * 1000 : Infinity);
    cache.set(userId, { attestation: found, until });
    return found;
  };
  return {
    attestation,
    isVerified: async (userId) => (await attestation(userId)) !== undefined,
  };
}
