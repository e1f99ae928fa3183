import { createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import {
  ApiError,
  asyncHandler,
  createAuditLog,
  decryptAttachment,
  homeserverTokenCheck,
  isEncryptedFile,
  jsonBody,
  type EventHandler,
  type Leader,
  type LeaseStore,
  type NotificationStore,
  type Registration,
} from "@medmesh/common";
import type { Express } from "express";
import type { Knex } from "knex";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { InteropConfig } from "../interop/config.ts";
import { mountInteropApi } from "../interop/server.ts";
import { createPruner, redactionPurge, removedCounter } from "../lifecycle/index.ts";
import { createBridgeStore, type InboundRow, type OutboundRow } from "../store/index.ts";
import { mountAdminApi } from "./admin-api.ts";
import { bridgeStatus } from "./status.ts";
import { BridgeCrypto } from "./crypto.ts";
import { createGhosts } from "./ghosts.ts";
import { inboundHandler } from "./inbound.ts";
import { vendorLeaders } from "./leaders.ts";
import { MatrixSide } from "./matrix.ts";
import { outbound } from "./outbound.ts";
import { OrderedQueue } from "./queue.ts";
import { ghostVerification } from "./verification.ts";

/** The store's notification channels: rows for the vendors' leaders; a ghost's device asked of its leader. */
const ROWS = "medmesh_bridge_rows";
const DEVICES = "medmesh_bridge_devices";

export interface BridgeCore {
  onEvents: EventHandler;
  readerFor(roomId: string): Promise<string | undefined>;
  /** The vendor-facing interop API, on the bridge's public listener. */
  mountInterop(app: Express): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The bridge core: the interop API (vendor → MedMesh, mounted by `mountInterop` on the public
 * listener; `app` is the internal one, for the admin API), the two ordered persistent queues
 * (vendor → Matrix, Matrix → vendor), ghosts and portals, and the devices that make encrypted
 * portals work. Appservice transactions are recorded in the outbound queue before Synapse gets
 * its answer; vendor events are stored before the vendor gets its 202. What it keeps goes when
 * delivered, redacted or out of its time (lifecycle/).
 *
 * On replicas (docs/replicas.md): every replica serves the interop API, the appservice API and the
 * admin API (they write rows); each vendor's queue rows, its ghosts' devices and their
 * verification run on the leader of `bridge:<vendor>` only (leaders.ts). A replica that writes a
 * row for a vendor it does not lead tells the leader through the store's notifications.
 */
export function createBridgeCore(
  app: Express,
  d: {
    config: InteropConfig;
    homeserver: { url: string; server_name: string };
    registration: Registration;
    knex: Knex;
    leases: LeaseStore;
    notifications: NotificationStore;
    /** A singleton job's leader handle (`createLeadership(…).job`). */
    leader: (job: string) => Leader;
    log: Logger;
    metrics: Registry;
  },
): BridgeCore {
  const botUserId = `@${d.registration.sender_localpart}:${d.homeserver.server_name}`;
  const store = createBridgeStore(d.knex);
  const audit = createAuditLog(d.knex);
  const removed = removedCounter(d.metrics);
  const asToken = d.registration.as_token;
  const vendorIds = d.config.vendors.map((v) => v.id);
  const leaders = vendorLeaders(d.leader, vendorIds);
  const crypto = new BridgeCrypto({
    homeserverUrl: d.homeserver.url,
    asToken,
    ghosts: store.ghosts,
    portals: store.portals,
    leaders,
    askLeader: (userId) => d.notifications.notify(DEVICES, userId),
    log: d.log,
    // Events waiting for a room key are tried again as soon as keys arrive.
    onKeys: () => {
      void store.outbound.wakeEncrypted().then(
        () => {
          delivery.wake();
        },
        (err: unknown) => {
          d.log.warn({ err }, "could not reschedule events waiting for keys");
        },
      );
    },
  });
  const verification = ghostVerification({
    homeserverUrl: d.homeserver.url,
    asToken,
    ghosts: store.ghosts,
    leaders,
    log: d.log,
    metrics: d.metrics,
  });
  const ghosts = createGhosts({
    homeserverUrl: d.homeserver.url,
    asToken,
    serverName: d.homeserver.server_name,
    store: store.ghosts,
    vendors: vendorIds,
    avatarOrigins: new Map(
      d.config.vendors.map((v) => [v.id, v.avatar_origins.map((u) => new URL(u).origin)]),
    ),
    log: d.log,
    onRegistration: () => {
      verification.wake();
    },
  });
  const matrix = new MatrixSide(ghosts, crypto, { url: d.homeserver.url, asToken });
  const c = d.config.delivery;
  const queue = {
    concurrency: c.concurrency,
    maxAttempts: c.max_attempts,
    initialBackoffMs: c.initial_backoff_ms,
    maxBackoffMs: c.max_backoff_ms,
    leaders,
    log: d.log,
    metrics: d.metrics,
  };
  const log = d.log.child({ component: "bridge-lifecycle" });
  const redactions = redactionPurge({ store, audit, log, removed });
  const pruner = createPruner({
    store,
    leases: d.leases,
    config: d.config.lifecycle,
    vendors: vendorIds,
    log,
    removed,
  });
  const out = outbound({
    store,
    redactions,
    ghosts,
    crypto,
    matrix,
    log: d.log,
    config: d.config,
    botUserId,
    audit,
    metrics: d.metrics,
    signingKey: {
      keyId: d.config.signing_key.key_id,
      privateKey: createPrivateKey(readFileSync(d.config.signing_key.private_key_file)),
    },
  });
  const inbound = new OrderedQueue<InboundRow>({
    ...queue,
    name: "inbound",
    table: store.inbound,
    failedState: "failed",
    handle: inboundHandler({
      store,
      removed,
      ghosts,
      matrix,
      log: d.log,
      botUserId,
      encryptPortals: d.config.encrypt_portals,
      audit,
    }),
    onFailed: async (row, reason) => {
      await out.tellVendor(row, reason);
      delivery.wake();
    },
  });
  const delivery = new OrderedQueue<OutboundRow>({
    ...queue,
    name: "outbound",
    table: store.outbound,
    failedState: "dead",
    handle: out.deliver,
    onFailed: out.notifyUndelivered,
  });

  const announceHere = (): void => {
    inbound.wake();
    delivery.wake();
  };
  /**
   * New rows: the queues here look at once; where this replica does not lead every vendor, the
   * store's notification tells the leaders (the standby's rows reach them without the 500 ms poll).
   */
  const announce = (): void => {
    announceHere();
    if (leaders.led().length < vendorIds.length)
      d.notifications.notify(ROWS, "").catch((err: unknown) => {
        d.log.warn({ err }, "could not announce new bridge rows (the leader polls them)");
      });
  };
  leaders.onElected(() => {
    announceHere();
    verification.wake();
  });
  leaders.onLost((vendor) => {
    crypto.release(vendor);
  });

  const status = bridgeStatus({ store, vendors: vendorIds, log });
  mountAdminApi(app, {
    store,
    queues: { inbound: { wake: announce }, delivery: { wake: announce } },
    pruner,
    status,
    lifecycle: d.config.lifecycle,
  });
  // The homeserver asks whether a user in our namespace exists (a Matrix user invited a ghost the
  // bridge has not met): yes, for any well-formed ghost of a configured vendor.
  const hsToken = homeserverTokenCheck(d.registration);
  app.get(
    "/_matrix/app/v1/users/:userId",
    asyncHandler(async (req, res) => {
      await hsToken(req);
      if (!(await ghosts.remoteOf(String(req.params.userId))))
        throw new ApiError("M_NOT_FOUND", "No such user on the bridge");
      res.json({});
    }),
  );

  return {
    mountInterop: (pub) => {
      pub.use(jsonBody("10mb"));
      mountInteropApi(pub, {
        config: d.config,
        store,
        log: d.log,
        metrics: d.metrics,
        onAccepted: announce,
        media: {
          fetch: async (row) => {
            if (!row.mxc) throw new ApiError("M_NOT_FOUND", "The file has no content");
            const data = await matrix.download(botUserId, row.mxc);
            return isEncryptedFile(row.file) ? decryptAttachment(data, row.file) : data;
          },
        },
      });
    },
    onEvents: async (events, transaction) => {
      await out.record(events, transaction);
      announce();
    },
    // A ghost in the portal reads it (the frame's catch-up, a dead letter fetched again).
    readerFor: async (roomId) => (await store.portals.ghostsIn(roomId))[0],
    start: async () => {
      // The bridge host decrypts portal messages: it is an access point, recorded at each start.
      await audit.record({
        actor: botUserId,
        action: "bridge.access_point",
        object: hostname(),
        outcome: "started",
        details: { public_url: d.config.public_url, vendors: vendorIds },
      });
      await crypto.start();
      await d.notifications.listen(ROWS, announceHere, announceHere);
      await d.notifications.listen(DEVICES, (userId) => {
        if (leaders.leadsGhost(userId))
          crypto.ensureDevice(userId).catch((err: unknown) => {
            d.log.warn({ err, user_id: userId }, "could not make a ghost's device a replica asked for");
          });
      });
      inbound.start();
      delivery.start();
      verification.start();
      pruner.start();
      status.start();
    },
    stop: async () => {
      // Before the leases are released (start.ts): rows in flight are recorded, not repeated.
      await Promise.all([inbound.stop(), delivery.stop(), verification.stop(), pruner.stop(), status.stop()]);
      crypto.close();
    },
  };
}
