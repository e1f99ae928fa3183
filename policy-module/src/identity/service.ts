import {
  type AppserviceEvent,
  type Leadership,
  type Store,
  type SynapseAdmin,
  createAuditLog,
} from "@medmesh/common";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { PeerClient } from "../directory/index.ts";
import { forbidden, Refusal } from "../proxy/index.ts";
import type { PeerRoute } from "../peer-api.ts";
import { publicJwkOf } from "../trust/trust-list.ts";
import type { OrgKey } from "../trust/request-signing.ts";
import type { BotHost } from "../bot/index.ts";
import { accountGone, deactivatedAccounts } from "./accounts.ts";
import { signAttestation } from "./attestation.ts";
import { describeChange, reviewWaiting, verificationConversation } from "./bot-commands.ts";
import { storedClinicians } from "./clinicians.ts";
import { identityDocuments, verificationRecords, type VerificationRecord } from "./records.ts";
import { createRoomBadges, type BadgeContent } from "./room-badges.ts";
import { createRegistries } from "./registries/index.ts";
import { ATTESTATION_PATH, createRemoteVerification } from "./remote.ts";
import { createReverifier, REVERIFY_JOB } from "./reverify.ts";
import { startRevocation, type Revocation } from "./revocation.ts";
import { revocationTables } from "./revocation-store.ts";
import { configuredClinicians, type IdentityConfig, type LocalClinicians } from "./verification.ts";
import { createVerifier } from "./verifier.ts";
import { createSingleSignOn, ssoIdentities, type SingleSignOn } from "./sso.ts";
import { identityClientRoutes } from "./client-routes.ts";

export interface IdentityDeps {
  serverName: string;
  store: Store;
  /** Singleton jobs (re-verification) run on the elected leader among the replicas. */
  leadership: Leadership;
  /** The E2EE bots' host: the verification bot runs on its leader (docs/replicas.md). */
  bots: BotHost;
  log: Logger;
  metrics: Registry;
  orgKey: OrgKey | undefined;
  orgPublicJwk: Record<string, unknown> | undefined;
  peers: PeerClient;
  trust: {
    isTrusted(server: string): boolean;
    attestationKeys(server: string): import("node:crypto").JsonWebKey[];
    /** The organisations on the trust list now (revocation notices go to each). */
    servers(): string[];
  };
  peerTimeoutMs: number;
  homeserverUrl: string;
  asToken: string;
  /** The room-admin bot (badges), without devices. */
  botUserId: string;
  /** The verification bot of direct chats (an end-to-end encrypting client). */
  verifyBotUserId: string;
  admin: SynapseAdmin;
  /** Who reviews ID documents (the console's reviewers and org admins); undefined: Synapse's server admins. */
  reviewers?: () => Promise<string[] | undefined>;
  /** A user's verification changed (groups/ removes who no longer fits a profession-limited group). */
  verificationChanged?: (userId: string, rooms: readonly string[]) => Promise<void>;
}

/**
 * The identity capability: registries, the verification workflow, the organisation's verified
 * clinicians (for the proxy), attestations for other organisations, and re-verification.
 */
export async function startIdentity(config: IdentityConfig, d: IdentityDeps) {
  const registries = createRegistries(config.registries, { log: d.log });

  const records = verificationRecords(d.store.knex);
  // Shared by the instances on the store: a change at one is announced to all (LISTEN/NOTIFY).
  const stored = await storedClinicians(records, d.store.notifications);
  const revocations = revocationTables(d.store.knex);
  // Set once revocation has started (below); the badges and the verifier call it only later.
  const late: { revocation?: Revocation } = {};
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
        identity_provider: null,
      }
    );
  };
  const audit = createAuditLog(d.store.knex);
  const identities = ssoIdentities(d.store.knex);
  /** "identity proven by …": the account came from the organisation's own single sign-on. */
  const provenBy = (r: VerificationRecord): { identity_proven_by?: string } =>
    r.identity_provider === null ? {} : { identity_proven_by: config.sso?.organisation_name ?? d.serverName };
  const attestationFor = (r: VerificationRecord): string | undefined =>
    d.orgKey && r.verified_at && r.expires_at
      ? signAttestation(d.orgKey, {
          iss: d.serverName,
          sub: r.user_id,
          profession: r.profession ?? "unknown",
          registry: r.registry,
          verified_at: r.verified_at.toISOString(),
          // Short-lived: peers refresh it before it runs out, and a revocation outlives none for long.
          exp: Math.floor(
            Math.min(r.expires_at.getTime(), Date.now() + config.attestation_ttl_seconds * 1000) / 1000,
          ),
          iat: Math.floor(Date.now() / 1000),
          ...provenBy(r),
        })
      : undefined;
  // Filled in below; the badge needs the remote verification, which needs nothing from here.
  let remoteAttestation: (
    userId: string,
  ) => Promise<
    | { jws: string; profession: string; registry: string; exp: number; identity_proven_by?: string }
    | undefined
  > = () => Promise.resolve(undefined);
  const badges = createRoomBadges({
    ...(d.verificationChanged ? { afterChange: d.verificationChanged } : {}),
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
              ...provenBy(r),
            }
          : { verified: false };
      }
      // Another organisation's user: their organisation's attestation, or unverified (a
      // revocation, an attestation run out, nothing usable); remembered for the background refresh.
      const a = await remoteAttestation(userId);
      const content: BadgeContent = a
        ? {
            verified: true,
            attestation: a.jws,
            profession: a.profession,
            registry: a.registry,
            expires_at: new Date(a.exp * 1000).toISOString(),
            ...(a.identity_proven_by ? { identity_proven_by: a.identity_proven_by } : {}),
          }
        : { verified: false };
      await late.revocation?.shown(userId, content).catch((err: unknown) => {
        d.log.warn({ err, user_id: userId }, "could not record a remote badge");
      });
      return content;
    },
  });
  const documents = identityDocuments(d.store.knex);
  /** The organisation's admins are Synapse's server admins. */
  const requireAdmin = async (userId: string): Promise<void> => {
    const { admin } = await d.admin.request<{ admin?: boolean }>(
      "GET",
      `/_synapse/admin/v1/users/${encodeURIComponent(userId)}/admin`,
    );
    if (!admin) throw forbidden("Only the organisation's admins review ID documents");
  };
  const verifier = createVerifier({
    serverName: d.serverName,
    records,
    registries,
    audit,
    log: d.log,
    validityMs: config.validity_hours * 3_600_000,
    requireDocument: config.require_id_document,
    duplicateNumber: config.duplicate_number,
    accountGone: (userId: string) => accountGone(d.admin, userId),
    documents,
    ...(config.sso
      ? {
          identityProvider: async (userId: string) => {
            const found = await identities.forUser(userId);
            return found?.idp_id === config.sso?.idp_id ? found?.idp_id : undefined;
          },
          organisationName: config.sso.organisation_name,
        }
      : {}),
    onChange: (r, actor) => {
      const wasVerified = stored.record(r.user_id) !== undefined;
      stored.update(r);
      late.revocation
        ?.localChanged(r.user_id, wasVerified && stored.record(r.user_id) === undefined)
        .catch((err: unknown) => {
          d.log.error({ err, user_id: r.user_id }, "could not queue the revocation notices");
        });
      d.log.info({ user_id: r.user_id, status: r.status }, "verification status changed");
      badges.changed(r.user_id).catch((err: unknown) => {
        d.log.warn({ err, user_id: r.user_id }, "could not update verification badges");
      });
      if (r.status === "in_review")
        tellReviewers(r).catch((err: unknown) => {
          d.log.warn({ err, user_id: r.user_id }, "could not tell the reviewers about a waiting document");
        });
      // What the user asked for themselves they were answered already; the rest they are told.
      if (actor !== r.user_id)
        notify(r).catch((err: unknown) => {
          d.log.warn({ err, user_id: r.user_id }, "could not tell about a verification change");
        });
    },
  });
  const sso: (SingleSignOn & { settled(): Promise<void> }) | undefined = config.sso
    ? createSingleSignOn({ config: config.sso, identities, admin: d.admin, verifier, audit, log: d.log })
    : undefined;
  const reverifier = createReverifier({
    verifier,
    records,
    leader: d.leadership.job(REVERIFY_JOB),
    knex: d.store.knex,
    documents: d.store.documents,
    config: config.reverify,
    deactivatedAccounts: () => deactivatedAccounts(d.admin),
    log: d.log,
    metrics: d.metrics,
  });
  const remote = createRemoteVerification({
    peers: d.peers,
    trust: d.trust,
    refreshMs: config.remote_refresh_seconds * 1000,
    timeoutMs: d.peerTimeoutMs,
    revokedAt: (userId) => revocations.revokedAt(userId),
    log: d.log,
  });
  remoteAttestation = (userId) => remote.attestation(userId);
  const rev = await startRevocation({
    config,
    serverName: d.serverName,
    store: d.store,
    tables: revocations,
    orgKey: d.orgKey,
    peers: d.peers,
    peerServers: () => d.trust.servers(),
    attestationKeys: (s) => d.trust.attestationKeys(s),
    audit,
    badges,
    remote,
    log: d.log,
    metrics: d.metrics,
  });
  late.revocation = rev;

  /** Client API, answered by the proxy for the authenticated user. */
  const clientRoutes = identityClientRoutes({
    verifier,
    documents,
    idDocument: config.id_document,
    requireAdmin,
  });

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
    rev.peerRoute,
  ];

  /**
   * The verification bot, registered on every replica (`identity.bot` decides whether this one may
   * run it): what it must tell is queued in the store here and sent by the replica that runs it.
   */
  const bot = d.bots.add(d.verifyBotUserId, () => ({
    homeserverUrl: d.homeserverUrl,
    asToken: d.asToken,
    ignoredMembers: [d.botUserId],
    admin: d.admin,
    log: d.log.child({ component: "bot" }),
    metrics: d.metrics,
    onMessage: verificationConversation({
      verifier,
      displayName: async (userId) =>
        (
          await d.admin
            .request<{ displayname?: string }>(
              "GET",
              `/_matrix/client/v3/profile/${encodeURIComponent(userId)}`,
            )
            .catch(() => ({ displayname: undefined }))
        ).displayname,
      idDocument: { types: config.id_document.content_types, maxBytes: config.id_document.max_bytes },
    }),
  }));
  const notify = async (r: VerificationRecord): Promise<void> => {
    const text = describeChange(r);
    if (!text) return;
    await bot.tell(r.user_id, text.user);
    if (text.admins) for (const admin of await organisationAdmins()) await bot.tell(admin, text.admins);
  };
  /** A document waits: everyone who may decide is told (no registration number, no document). */
  const tellReviewers = async (r: VerificationRecord): Promise<void> => {
    const text = reviewWaiting(r);
    for (const reviewer of (await d.reviewers?.()) ?? (await organisationAdmins())) {
      if (reviewer !== r.user_id) await bot.tell(reviewer, text);
    }
  };
  const organisationAdmins = async (): Promise<string[]> => {
    const { users } = await d.admin.request<{ users: { name: string }[] }>(
      "GET",
      "/_synapse/admin/v2/users?admins=true&deactivated=false&limit=100",
    );
    return users.map((u) => u.name).filter((u) => u !== d.admin.userId);
  };
  return {
    clinicians,
    verifier,
    reverifier,
    remote,
    audit,
    badges,
    clientRoutes,
    peerRoutes,
    registries,
    revocation: rev,
    /** Single sign-on with the organisation's identity provider, when configured. */
    sso,
    /** The transaction's events: badges (the verification bot's direct chats: the bots' host). */
    onEvents: async (events: readonly AppserviceEvent[]): Promise<void> => {
      await badges.onEvents(events);
    },
    stop: async () => {
      await rev.stop();
    },
  };
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
