import { createAuditLog, type Store, type SynapseAdmin } from "@medmesh/common";
import type { Route } from "../proxy/index.ts";
import type { AuditService } from "../audit/index.ts";
import type { IdentityDocuments } from "../identity/records.ts";
import type { Verifier } from "../identity/verifier.ts";
import type { TrustStatus } from "../trust/index.ts";
import { sweepHistory } from "../retention/index.ts";
import type { ChannelService } from "../channels/index.ts";
import { auditRoutes } from "./api-audit.ts";
import { bridgeRoutes } from "./api-bridge.ts";
import { channelRoutes } from "./api-channels.ts";
import { memberRoutes } from "./api-members.ts";
import { reviewRoutes } from "./api-reviews.ts";
import { sessionRoutes } from "./api-session.ts";
import { statusRoutes } from "./api-status.ts";
import { assetRoutes, buildAssets } from "./assets.ts";
import type { ApiDeps } from "./http.ts";
import { auditQuery } from "./audit-query.ts";
import type { ConsoleConfig } from "./config.ts";
import { allows, createRoles } from "./roles.ts";
import { createSessions } from "./sessions.ts";

export { CONSOLE_MIGRATIONS } from "./migrations.ts";
export { ConsoleConfigSchema, type ConsoleConfig } from "./config.ts";
export { audited, CONSOLE_PATH, consoleRoute, json, type ApiDeps } from "./http.ts";
export { runAdminCli } from "./cli.ts";

export interface ConsoleDeps {
  serverName: string;
  store: Store;
  admin: SynapseAdmin;
  verifier: () => Verifier | undefined;
  documents: IdentityDocuments;
  audit: () => AuditService | undefined;
  trust: () => TrustStatus | undefined;
  retentionPolicy: { enabled: boolean; default_days: number; min_days: number };
  retentionIndex: () => Promise<{ indexed: number; waiting: number; kept: number } | undefined>;
  serviceAccounts: readonly string[];
  probePeer: (server: string) => Promise<unknown>;
  /** The bridge's admin API, for its part of the status page. */
  bridge: ConsoleConfig["bridge"];
  /** Broadcast channels (channels/), once they run. */
  channels?: () => ChannelService | undefined;
  /** A session unused this long ends (default 30 minutes); every session ends after `sessionMaxMs` (12 h). */
  sessionIdleMs?: number;
  sessionMaxMs?: number;
}

/**
 * The organisation's admin console (docs/console.md): its pages and its API, answered by the
 * policy module on the organisation's client URL under /_medmesh/console/.
 */
export async function createConsole(
  d: ConsoleDeps,
): Promise<{ routes: Route[]; reviewers: () => Promise<string[]>; api: ApiDeps }> {
  const knex = d.store.knex;
  const maxMs = d.sessionMaxMs ?? 12 * 3_600_000;
  const sessions = createSessions(knex, { idleMs: d.sessionIdleMs ?? 30 * 60_000, maxMs });
  const api = {
    sessions,
    roles: createRoles(knex, d.admin, d.serviceAccounts),
    audit: createAuditLog(knex),
    serverName: d.serverName,
  };
  const query = auditQuery(knex);
  const assets = await buildAssets();
  return {
    /** For capabilities with console routes of their own (departments/). */
    api,
    /** Who may decide on ID-document reviews (console roles and the Synapse server admins). */
    reviewers: async () =>
      (await api.roles.list()).filter((g) => allows(g.role, "reviews.decide")).map((g) => g.user_id),
    routes: [
      ...sessionRoutes(api, Math.floor(maxMs / 1000)),
      ...reviewRoutes({ ...api, verifier: d.verifier, documents: d.documents }),
      ...memberRoutes({ ...api, admin: d.admin, knex, query, serviceAccounts: d.serviceAccounts }),
      ...auditRoutes({ ...api, query, service: d.audit }),
      ...statusRoutes({
        ...api,
        admin: d.admin,
        knex,
        query,
        trust: d.trust,
        retentionPolicy: d.retentionPolicy,
        retentionIndex: d.retentionIndex,
        probePeer: d.probePeer,
        reviewsWaiting: async () => (await d.verifier()?.reviewQueue())?.length,
        sweeps: sweepHistory(knex),
        bridgeUrl: d.bridge?.url,
      }),
      ...bridgeRoutes({ ...api, bridge: d.bridge }),
      ...channelRoutes({ ...api, channels: d.channels ?? (() => undefined) }),
      ...assetRoutes(assets),
    ],
  };
}
