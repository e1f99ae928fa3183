import type { Store, SynapseAdmin } from "@medmesh/common";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { createAuditLog } from "../audit/index.ts";
import type { PeerClient } from "../directory/index.ts";
import { Refusal, route, type Route } from "../proxy/index.ts";
import type { PeerRoute } from "../peer-api.ts";
import { publicJwkOf } from "../trust/trust-list.ts";
import type { OrgKey } from "../trust/request-signing.ts";
import { signAttestation } from "./attestation.ts";
import { storedClinicians } from "./clinicians.ts";
import { verificationRecords, type VerificationRecord } from "./records.ts";
import { createRoomBadges, type BadgeContent } from "./room-badges.ts";
import { createBigRegistry } from "./registries/big.ts";
import { loadRegistryExtract } from "./registries/extract.ts";
import { createRizivRegistry } from "./registries/riziv.ts";
import type { RegistryAdapter } from "./registries/types.ts";
import { ATTESTATION_PATH, createRemoteVerification } from "./remote.ts";
import { createReverifier } from "./reverify.ts";
import { configuredClinicians, type IdentityConfig, type LocalClinicians } from "./verification.ts";
import { createVerifier } from "./verifier.ts";

export interface IdentityDeps {
  serverName: string;
  store: Store;
  log: Logger;
  metrics: Registry;
  orgKey: OrgKey | undefined;
  orgPublicJwk: Record<string, unknown> | undefined;
  peers: PeerClient;
  trust: {
    isTrusted(server: string): boolean;
    attestationKeys(server: string): import("node:crypto").JsonWebKey[];
  };
  peerTimeoutMs: number;
  homeserverUrl: string;
  asToken: string;
  botUserId: string;
  admin: SynapseAdmin;
}

/**
 * The identity capability: registries, the verification workflow, the organisation's verified
 * clinicians (for the proxy), attestations for other organisations, and re-verification.
 */
export async function startIdentity(config: IdentityConfig, d: IdentityDeps) {
  const registries = new Map<string, RegistryAdapter>();
  const add = (a: RegistryAdapter): void => {
    registries.set(a.registry.toUpperCase(), a);
  };
  if (config.registries.big)
    add(createBigRegistry({ url: config.registries.big.url, timeoutMs: config.registries.big.timeout_ms }));
  if (config.registries.riziv)
    add(
      createRizivRegistry({
        url: config.registries.riziv.url,
        timeoutMs: config.registries.riziv.timeout_ms,
      }),
    );
  if (config.registries.extract) add(loadRegistryExtract(config.registries.extract.file));

  const records = verificationRecords(d.store.knex);
  const stored = await storedClinicians(records);
  const configured = configuredClinicians(config);
  const clinicians = combine(configured, stored);
  const started = new Date();
  /**
   * The record an attestation is made from: a registry check, or else the admin's hand-checked
   * list (registry "organisation", valid for a day at a time, re-issued while it is listed).
   */
  const recordFor = (userId: string): VerificationRecord | undefined => {
    const r = stored.record(userId);
    if (r) return r;
    const c = configured.get(userId);
    return (
      c && {
        user_id: c.user_id,
        registry: "organisation",
        registration_number: "",
        claimed_name: c.display_name,
        registered_name: c.display_name,
        profession: c.profession,
        specialisms: [],
        status: "verified",
        reason: null,
        verified_at: started,
        expires_at: new Date(Date.now() + 86_400_000),
        last_checked_at: null,
        attempts: 0,
        updated_at: started,
      }
    );
  };
  const audit = createAuditLog(d.store.knex);
  const attestationFor = (r: VerificationRecord): string | undefined =>
    d.orgKey && r.verified_at && r.expires_at
      ? signAttestation(d.orgKey, {
          iss: d.serverName,
          sub: r.user_id,
          profession: r.profession ?? "unknown",
          registry: r.registry,
          verified_at: r.verified_at.toISOString(),
          exp: Math.floor(r.expires_at.getTime() / 1000),
          iat: Math.floor(Date.now() / 1000),
        })
      : undefined;
  // Filled in below; the badge needs the remote verification, which needs nothing from here.
  let remoteAttestation: (
    userId: string,
  ) => Promise<{ jws: string; profession: string; registry: string; exp: number } | undefined> = () =>
    Promise.resolve(undefined);
  const badges = createRoomBadges({
    homeserverUrl: d.homeserverUrl,
    asToken: d.asToken,
    botUserId: d.botUserId,
    serverName: d.serverName,
    admin: d.admin,
    log: d.log,
    badgeFor: async (userId): Promise<BadgeContent | undefined> => {
      if (userId.endsWith(`:${d.serverName}`)) {
        const r = recordFor(userId);
        const attestation = r && attestationFor(r);
        return r && attestation
          ? {
              verified: true,
              attestation,
              profession: r.profession ?? "unknown",
              registry: r.registry,
              expires_at: r.expires_at?.toISOString() ?? "",
            }
          : { verified: false };
      }
      const a = await remoteAttestation(userId);
      return (
        a && {
          verified: true,
          attestation: a.jws,
          profession: a.profession,
          registry: a.registry,
          expires_at: new Date(a.exp * 1000).toISOString(),
        }
      );
    },
  });
  const verifier = createVerifier({
    serverName: d.serverName,
    records,
    registries,
    audit,
    log: d.log,
    validityMs: config.validity_hours * 3_600_000,
    onChange: (r) => {
      stored.update(r);
      d.log.info({ user_id: r.user_id, status: r.status }, "verification status changed");
      badges.changed(r.user_id).catch((err: unknown) => {
        d.log.warn({ err, user_id: r.user_id }, "could not update verification badges");
      });
    },
  });
  const reverifier = createReverifier({
    verifier,
    records,
    leases: d.store.leases,
    config: config.reverify,
    log: d.log,
    metrics: d.metrics,
  });
  const remote = createRemoteVerification({
    peers: d.peers,
    trust: d.trust,
    refreshMs: config.remote_refresh_seconds * 1000,
    timeoutMs: d.peerTimeoutMs,
    log: d.log,
  });
  remoteAttestation = (userId) => remote.attestation(userId);

  /** Client API, answered by the proxy for the authenticated user. */
  const clientRoutes: Route[] = [
    route("POST", "^/_medmesh/identity/v1/verification", async (ctx) => {
      const requester = await ctx.requireRequester();
      const body = await ctx.json(64 * 1024);
      const field = (name: string): string => {
        const v = body[name];
        if (typeof v !== "string") throw new Refusal(400, "M_MISSING_PARAM", `${name} is required`);
        return v;
      };
      const outcome = await verifier.start(requester.userId, {
        registry: field("registry"),
        number: field("number"),
        claimed_name: field("claimed_name"),
      });
      return { status: 200, body: outcome };
    }),
    route("GET", "^/_medmesh/identity/v1/verification", async (ctx) => {
      const requester = await ctx.requireRequester();
      const status = await verifier.status(requester.userId);
      if (!status) throw new Refusal(404, "M_NOT_FOUND", "You have not asked to be verified yet");
      return { status: 200, body: status };
    }),
  ];

  /** For trusted peers (signed requests, through the peer API). */
  const peerRoutes: PeerRoute[] = [
    {
      pattern: new RegExp(`^${ATTESTATION_PATH}([^/]+)$`),
      handle: (_ctx, [userId = ""]) => {
        const r = recordFor(userId);
        const attestation = r && attestationFor(r);
        if (!attestation) throw new Refusal(404, "M_NOT_FOUND", `${userId} is not a verified clinician here`);
        return { status: 200, body: { attestation } };
      },
    },
    {
      pattern: /^\/_medmesh\/identity\/v1\/jwks$/,
      handle: () => ({ status: 200, body: { keys: d.orgPublicJwk ? [publicJwkOf(d.orgPublicJwk)] : [] } }),
    },
  ];

  return { clinicians, verifier, reverifier, remote, audit, badges, clientRoutes, peerRoutes, registries };
}
export type Identity = Awaited<ReturnType<typeof startIdentity>>;

/** Verified by either source: the admin's hand-checked list or a registry check. */
function combine(a: LocalClinicians, b: LocalClinicians): LocalClinicians {
  return {
    isVerified: async (userId) => (await a.isVerified(userId)) || b.isVerified(userId),
    all: () => {
      const seen = new Map(a.all().map((c) => [c.user_id, c]));
      for (const c of b.all()) seen.set(c.user_id, c);
      return [...seen.values()];
    },
    get: (userId) => b.get(userId) ?? a.get(userId),
    version: () => a.version() + b.version(),
  };
}
