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
  type Registration,
} from "@medmesh/common";
import type { Express } from "express";
import type { Knex } from "knex";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { InteropConfig } from "../interop/config.ts";
import { mountInteropApi } from "../interop/server.ts";
import { BridgeCrypto } from "./crypto.ts";
import { createGhosts } from "./ghosts.ts";
import { inboundHandler, type InboundRow } from "./inbound.ts";
import { MatrixSide } from "./matrix.ts";
import { outbound, type OutboundRow } from "./outbound.ts";
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
 * its answer; vendor events are stored before the vendor gets its 202.
 */
export function createBridgeCore(
  app: Express,
  d: {
    config: InteropConfig;
    homeserver: { url: string; server_name: string };
    registration: Registration;
    knex: Knex;
    log: Logger;
    metrics: Registry;
  },
): BridgeCore {
  const botUserId = `@${d.registration.sender_localpart}:${d.homeserver.server_name}`;
  const audit = createAuditLog(d.knex);
  const asToken = d.registration.as_token;
  const crypto = new BridgeCrypto({
    homeserverUrl: d.homeserver.url,
    asToken,
    knex: d.knex,
    log: d.log,
    // Events waiting for a room key are tried again as soon as keys arrive.
    onKeys: () => {
      void d
        .knex("bridge_outbound")
        .where({ state: "pending" })
        .whereNotNull("encrypted")
        .update({ next_attempt_at: new Date() })
        .then(
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
    knex: d.knex,
    log: d.log,
    metrics: d.metrics,
  });
  const ghosts = createGhosts({
    homeserverUrl: d.homeserver.url,
    asToken,
    serverName: d.homeserver.server_name,
    knex: d.knex,
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
    knex: d.knex,
    log: d.log,
    metrics: d.metrics,
  };
  const out = outbound({
    knex: d.knex,
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
    table: "interop_inbound",
    states: { done: "done", failed: "failed" },
    handle: inboundHandler({
      knex: d.knex,
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
    table: "bridge_outbound",
    states: { done: "delivered", failed: "dead" },
    handle: out.deliver,
    onFailed: out.notifyUndelivered,
  });

  mountAdminApi(app, d.knex, { inbound, delivery });
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
        knex: d.knex,
        log: d.log,
        metrics: d.metrics,
        onAccepted: () => {
          inbound.wake();
        },
        media: {
          fetch: async (row) => {
            if (!row.mxc) throw new ApiError("M_NOT_FOUND", "The file has no content");
            const data = await matrix.download(botUserId, row.mxc);
            const file = typeof row.file === "string" ? (JSON.parse(row.file) as unknown) : row.file;
            return isEncryptedFile(file) ? decryptAttachment(data, file) : data;
          },
        },
      });
    },
    onEvents: async (events, transaction) => {
      await out.record(events, transaction);
      delivery.wake();
    },
    // A ghost in the portal reads it (the frame's catch-up, a dead letter fetched again).
    readerFor: async (roomId) =>
      (
        await d
          .knex("bridge_members")
          .where({ room_id: roomId })
          .orderBy("user_id")
          .first<{ user_id: string } | undefined>("user_id")
      )?.user_id,
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
    },
    stop: async () => {
      await Promise.all([inbound.stop(), delivery.stop(), verification.stop()]);
      crypto.close();
    },
  };
}

/**
 * Dead letters, on the service's internal port (not the public interop URL): what could not be
 * carried either way, and a retry.
 */
function mountAdminApi(
  app: Express,
  knex: Knex,
  queues: { inbound: OrderedQueue<InboundRow>; delivery: OrderedQueue<OutboundRow> },
): void {
  const tables = {
    outbound: { table: "bridge_outbound", failed: "dead", error: "last_error", queue: queues.delivery },
    inbound: { table: "interop_inbound", failed: "failed", error: "error", queue: queues.inbound },
  } as const;
  const pick = (direction: string) => {
    const t = tables[direction as keyof typeof tables] as (typeof tables)[keyof typeof tables] | undefined;
    if (!t)
      throw new ApiError(
        "M_NOT_FOUND",
        "direction is inbound (vendor → Matrix) or outbound (Matrix → vendor)",
      );
    return t;
  };
  app.get(
    "/_medmesh/admin/v1/bridge/:direction/failed",
    asyncHandler(async (req, res) => {
      const t = pick(String(req.params.direction));
      const rows = await knex(t.table)
        .where({ state: t.failed })
        .orderBy("seq")
        .limit(500)
        .select("seq", "vendor", "conversation_id", "attempts", `${t.error} as error`);
      res.json({ failed: rows.map((r: { seq: string }) => ({ ...r, seq: Number(r.seq) })) });
    }),
  );
  app.post(
    "/_medmesh/admin/v1/bridge/:direction/failed/:seq/retry",
    asyncHandler(async (req, res) => {
      const t = pick(String(req.params.direction));
      const n = await knex(t.table)
        .where({ seq: Number(req.params.seq), state: t.failed })
        .update({ state: "pending", attempts: 0, next_attempt_at: new Date() });
      if (n === 0) throw new ApiError("M_NOT_FOUND", "No failed event with this seq");
      t.queue.wake();
      res.json({ retried: true });
    }),
  );
}
