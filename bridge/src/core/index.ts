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
  type LeaseStore,
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
import { MatrixSide } from "./matrix.ts";
import { outbound } from "./outbound.ts";
import { OrderedQueue } from "./queue.ts";
import { ghostVerification } from "./verification.ts";

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
 */
export function createBridgeCore(
  app: Express,
  d: {
    config: InteropConfig;
    homeserver: { url: string; server_name: string };
    registration: Registration;
    knex: Knex;
    leases: LeaseStore;
    log: Logger;
    metrics: Registry;
  },
): BridgeCore {
  const botUserId = `@${d.registration.sender_localpart}:${d.homeserver.server_name}`;
  const store = createBridgeStore(d.knex);
  const audit = createAuditLog(d.knex);
  const removed = removedCounter(d.metrics);
  const asToken = d.registration.as_token;
  const crypto = new BridgeCrypto({
    homeserverUrl: d.homeserver.url,
    asToken,
    ghosts: store.ghosts,
    portals: store.portals,
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
    log: d.log,
    metrics: d.metrics,
  });
  const ghosts = createGhosts({
    homeserverUrl: d.homeserver.url,
    asToken,
    serverName: d.homeserver.server_name,
    store: store.ghosts,
    vendors: d.config.vendors.map((v) => v.id),
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
    log: d.log,
    metrics: d.metrics,
  };
  const log = d.log.child({ component: "bridge-lifecycle" });
  const redactions = redactionPurge({ store, audit, log, removed });
  const pruner = createPruner({ store, leases: d.leases, config: d.config.lifecycle, log, removed });
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

  const status = bridgeStatus({ store, vendors: d.config.vendors.map((v) => v.id), log });
  mountAdminApi(app, {
    store,
    queues: { inbound, delivery },
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
        onAccepted: () => {
          inbound.wake();
        },
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
      delivery.wake();
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
        details: { public_url: d.config.public_url, vendors: d.config.vendors.map((v) => v.id) },
      });
      await crypto.start();
      inbound.start();
      delivery.start();
      verification.start();
      pruner.start();
      status.start();
    },
    stop: async () => {
      await Promise.all([inbound.stop(), delivery.stop(), verification.stop(), pruner.stop(), status.stop()]);
      crypto.close();
    },
  };
}
