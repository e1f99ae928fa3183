import type { JsonWebKey } from "node:crypto";
import type { AuditLog, Store } from "@medmesh/common";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { PeerClient } from "../directory/index.ts";
import type { PeerRoute } from "../peer-api.ts";
import type { OrgKey } from "../trust/request-signing.ts";
import { STATUS_CHANNEL } from "./clinicians.ts";
import type { RemoteAnswer } from "./remote.ts";
import { createRemoteBadgeRefresher } from "./remote-badges.ts";
import { createRevocationOutbox } from "./revocation-outbox.ts";
import {
  createRevocationReceiver,
  REMOTE_REVOKED_CHANNEL,
  revocationNoticeCounter,
} from "./revocation-receiver.ts";
import type { RevocationTables } from "./revocation-store.ts";
import type { BadgeContent } from "./room-badges.ts";
import type { IdentityConfig } from "./verification.ts";

/**
 * Revocation that travels (docs/identity.md, "Revocation"): this organisation's revocations
 * pushed to its peers, peers' revocations received and applied to the badges in this
 * organisation's rooms, other organisations' badges refreshed before their attestations run out,
 * and every change announced to the other instances on the store.
 */
export async function startRevocation(d: {
  config: IdentityConfig;
  serverName: string;
  store: Store;
  tables: RevocationTables;
  orgKey: OrgKey | undefined;
  peers: PeerClient;
  peerServers(): string[];
  attestationKeys(server: string): JsonWebKey[];
  audit: AuditLog;
  badges: { changed(userId: string): Promise<number> };
  remote: { forget(userId: string): void; refresh(userId: string): Promise<RemoteAnswer> };
  log: Logger;
  metrics: Registry;
}) {
  const notices = revocationNoticeCounter(d.metrics);
  const outbox = createRevocationOutbox({
    serverName: d.serverName,
    orgKey: d.orgKey,
    tables: d.tables,
    peers: d.peers,
    peerServers: () => d.peerServers(),
    notices,
    notifications: d.store.notifications,
    audit: d.audit,
    config: d.config.revocation,
    log: d.log,
    metrics: d.metrics,
  });
  const refresher = createRemoteBadgeRefresher({
    tables: d.tables,
    leases: d.store.leases,
    refresh: (userId) => d.remote.refresh(userId),
    rebadge: (userId) => d.badges.changed(userId),
    refreshMs: d.config.remote_refresh_seconds * 1000,
    tickMs: d.config.remote_check_seconds * 1000,
    log: d.log,
  });
  // Every instance forgets what it remembered of a user another organisation revoked.
  await d.store.notifications.listen(REMOTE_REVOKED_CHANNEL, (userId) => {
    d.remote.forget(userId);
  });
  const peerRoute: PeerRoute = createRevocationReceiver({
    serverName: d.serverName,
    tables: d.tables,
    attestationKeys: (server) => d.attestationKeys(server),
    notifications: d.store.notifications,
    audit: d.audit,
    notices,
    log: d.log,
    applied: async (userId) => {
      d.remote.forget(userId);
      const rooms = await d.badges.changed(userId);
      d.log.info({ user_id: userId, rooms }, "revocation notice applied to the badges of our rooms");
    },
  });
  await outbox.start();
  refresher.start();

  return {
    outbox,
    refresher,
    peerRoute,
    /**
     * A local clinician's status changed in the store (on this instance): the other instances
     * reload it, and a lost verification goes to the peers.
     */
    async localChanged(userId: string, lostVerification: boolean): Promise<void> {
      await d.store.notifications.notify(STATUS_CHANNEL, userId).catch((err: unknown) => {
        d.log.warn({ err, user_id: userId }, "could not announce a status change to the other instances");
      });
      if (lostVerification) await outbox.revoked(userId);
    },
    /** The badge this organisation's bot now shows for another organisation's user. */
    async shown(userId: string, badge: BadgeContent): Promise<void> {
      const expiresAt = badge.verified && badge.expires_at ? new Date(badge.expires_at) : null;
      await d.tables.showBadge(
        userId,
        badge.verified,
        expiresAt,
        refresher.nextCheck(badge.verified, expiresAt),
      );
    },
    async stop(): Promise<void> {
      await refresher.stop();
      await outbox.stop();
    },
  };
}
export type Revocation = Awaited<ReturnType<typeof startRevocation>>;
