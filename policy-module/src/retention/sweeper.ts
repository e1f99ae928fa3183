import { createHash, randomBytes } from "node:crypto";
import {
  MatrixRequestError,
  RETENTION_REDACTION,
  type LeaseStore,
  type SynapseAdmin,
  type AuditLog,
  type AsUser,
} from "@medmesh/common";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { days, type RetentionConfig } from "./config.ts";
import type { RetentionIndex } from "./event-index.ts";

export interface SweepResult {
  ran: boolean;
  redacted: number;
  already_redacted: number;
  failed: number;
  purged_rooms: number;
  media_deleted: number;
  seconds: number;
}

const LEASE = "retention-sweep";
const LEASE_MS = 10 * 60_000;

/** The same event always gets the same redaction transaction: a repeated request is a no-op. */
export const redactionTxnId = (eventId: string): string =>
  `medmesh-retention-${createHash("sha256").update(eventId).digest("hex").slice(0, 32)}`;

/**
 * The sweep: for every expired, un-kept event, redact it as the room-admin bot (so every server in
 * the room drops the content), then purge the room's local history up to the oldest point that
 * holds no kept event, then delete local media only expired events referred to. Each redaction is
 * journalled before it is sent; a sweep that finds a journalled one asks Synapse whether it went
 * out before sending it again, so a crash neither loses nor doubles a redaction.
 */
export function createSweeper(d: {
  config: RetentionConfig;
  index: RetentionIndex;
  bot: AsUser;
  botUserId: string;
  admin: SynapseAdmin;
  serverName: string;
  leases: LeaseStore;
  audit: AuditLog;
  log: Logger;
  metrics: Registry;
  /** Tests: called after each redaction is sent, before it is marked done (a crash lands here). */
  afterRedaction?: (eventId: string) => Promise<void> | undefined;
}) {
  const holder = `retention-${String(process.pid)}-${randomBytes(4).toString("hex")}`;
  const counted = new Counter({
    name: "medmesh_retention_events_total",
    help: "Events the retention sweep handled, by outcome (redacted, already_redacted, failed)",
    labelNames: ["outcome"] as const,
    registers: [d.metrics],
  });
  const mediaDeleted = new Counter({
    name: "medmesh_retention_media_deleted_total",
    help: "Local media files deleted because only expired events referred to them",
    registers: [d.metrics],
  });
  const lastSweep = new Gauge({
    name: "medmesh_retention_last_sweep_seconds",
    help: "Duration of the last completed sweep",
    registers: [d.metrics],
  });
  const policy = {
    default_days: d.config.default_days,
    max_keep_days: d.config.max_keep_days,
  };
  const enc = encodeURIComponent;

  const isRedacted = async (roomId: string, eventId: string): Promise<boolean> => {
    try {
      const e = await d.bot<{ content?: object; unsigned?: { redacted_because?: unknown } }>(
        "GET",
        `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(eventId)}`,
      );
      return e.unsigned?.redacted_because !== undefined;
    } catch (err) {
      if (err instanceof MatrixRequestError && err.status === 404) return true; // purged already
      throw err;
    }
  };

  const redact = async (roomId: string, eventId: string): Promise<void> => {
    const path = `/_matrix/client/v3/rooms/${enc(roomId)}/redact/${enc(eventId)}/${redactionTxnId(eventId)}`;
    const body = { reason: "Retention period ended", [RETENTION_REDACTION]: true };
    try {
      await d.bot("PUT", path, body);
    } catch (err) {
      // Not admin (a room MedMesh did not create): the admin API makes the bot room admin once.
      if (!(err instanceof MatrixRequestError) || err.status !== 403) throw err;
      await d.admin.request("POST", `/_synapse/admin/v1/rooms/${enc(roomId)}/make_room_admin`, {
        user_id: d.botUserId,
      });
      await d.bot("PUT", path, body);
    }
  };

  /**
   * Purges up to an event (exclusive), or, when every message of the room expired, up to now:
   * Synapse's `purge_up_to_ts` counts by when it received events, not by when they were sent.
   */
  const purge = async (roomId: string, upTo: { event_id: string } | { ts: number }): Promise<boolean> => {
    try {
      const { purge_id } = await d.admin.request<{ purge_id: string }>(
        "POST",
        `/_synapse/admin/v1/purge_history/${enc(roomId)}`,
        "event_id" in upTo
          ? { delete_local_events: true, purge_up_to_event_id: upTo.event_id }
          : { delete_local_events: true, purge_up_to_ts: upTo.ts },
      );
      for (let i = 0; i < 600; i++) {
        const { status } = await d.admin.request<{ status: string }>(
          "GET",
          `/_synapse/admin/v1/purge_history_status/${enc(purge_id)}`,
        );
        if (status === "complete") return true;
        if (status === "failed") break;
        await new Promise((r) => setTimeout(r, 100));
      }
    } catch (err) {
      // Nothing before that point (a young room, or purged already): nothing to do.
      if (err instanceof MatrixRequestError && err.status === 404) return false;
      throw err;
    }
    d.log.warn({ room_id: roomId }, "history purge did not complete");
    return false;
  };

  /**
   * Local uploads older than the longest room period. Attachments of encrypted messages are
   * invisible to the index (their mxc:// URI is inside the ciphertext), so age is all there is.
   */
  const uploadsBefore = async (before: number): Promise<string[]> => {
    const found: string[] = [];
    for (let from: number | undefined = 0; from !== undefined;) {
      const page: { users: { name: string }[]; next_token?: string } = await d.admin.request(
        "GET",
        `/_synapse/admin/v2/users?from=${String(from)}&limit=100&guests=false`,
      );
      for (const { name } of page.users) {
        for (let mfrom: number | undefined = 0; mfrom !== undefined;) {
          const media: { media: { media_id: string; created_ts: number }[]; next_token?: number } =
            await d.admin.request(
              "GET",
              `/_synapse/admin/v1/users/${enc(name)}/media?order_by=created_ts&dir=f&limit=100&from=${String(mfrom)}`,
            );
          const old = media.media.filter((m) => m.created_ts < before);
          found.push(...old.map((m) => `mxc://${d.serverName}/${m.media_id}`));
          // Oldest first: a page with a newer upload ends this user's list.
          mfrom = old.length === media.media.length ? media.next_token : undefined;
        }
      }
      from = page.next_token === undefined ? undefined : Number(page.next_token);
    }
    return found;
  };

  const runOnce = async (now: Date): Promise<SweepResult> => {
    const started = process.hrtime.bigint();
    const result: SweepResult = {
      ran: false,
      redacted: 0,
      already_redacted: 0,
      failed: 0,
      purged_rooms: 0,
      media_deleted: 0,
      seconds: 0,
    };
    if (!(await d.leases.tryAcquire(LEASE, holder, LEASE_MS))) return result;
    result.ran = true;
    const rooms = new Set<string>();
    const media = new Set<string>();
    const failed = new Set<string>();
    try {
      for (;;) {
        const batch = (
          await d.index.due(
            now.getTime(),
            days(d.config.default_days),
            days(d.config.max_keep_days),
            d.config.batch_size + failed.size,
          )
        ).filter((e) => !failed.has(e.event_id));
        if (batch.length === 0) break;
        const done = new Map<string, string[]>();
        for (const e of batch) {
          try {
            if (e.redacting && (await isRedacted(e.room_id, e.event_id))) {
              result.already_redacted++;
              counted.inc({ outcome: "already_redacted" });
            } else {
              await d.index.markRedacting(e.event_id, new Date());
              await redact(e.room_id, e.event_id);
              await d.afterRedaction?.(e.event_id);
              result.redacted++;
              counted.inc({ outcome: "redacted" });
            }
            await d.index.markRedacted(e.event_id, new Date());
            rooms.add(e.room_id);
            for (const m of e.media) media.add(m);
            done.set(e.room_id, [...(done.get(e.room_id) ?? []), e.event_id]);
          } catch (err) {
            failed.add(e.event_id);
            result.failed++;
            counted.inc({ outcome: "failed" });
            d.log.warn(
              { err, room_id: e.room_id, event_id: e.event_id },
              "could not redact an expired event",
            );
          }
        }
        for (const [roomId, eventIds] of done)
          await d.audit.record({
            actor: d.botUserId,
            action: "retention.redact",
            object: roomId,
            outcome: "redacted",
            details: { event_ids: eventIds, policy },
          });
        d.log.info({ redacted: result.redacted, failed: result.failed }, "retention sweep progress");
        await d.leases.tryAcquire(LEASE, holder, LEASE_MS); // still ours: renew
      }

      for (const roomId of rooms) {
        const stays = await d.index.firstToStay(roomId);
        const upTo = stays ? { event_id: stays } : { ts: Date.now() };
        if (await purge(roomId, upTo)) {
          result.purged_rooms++;
          await d.audit.record({
            actor: d.botUserId,
            action: "retention.purge",
            object: roomId,
            outcome: "purged",
            details: { up_to: upTo, policy },
          });
        }
      }

      const local = [...media].filter((m) => m.startsWith(`mxc://${d.serverName}/`));
      const expiredUploads = await uploadsBefore(now.getTime() - days(d.config.max_days));
      const used = await d.index.referenced(expiredUploads);
      for (const mxc of [
        ...(await d.index.unreferenced(local)),
        ...expiredUploads.filter((m) => !used.has(m)),
      ]) {
        const mediaId = mxc.slice(`mxc://${d.serverName}/`.length);
        try {
          await d.admin.request("DELETE", `/_synapse/admin/v1/media/${enc(d.serverName)}/${enc(mediaId)}`);
          result.media_deleted++;
          mediaDeleted.inc();
        } catch (err) {
          if (err instanceof MatrixRequestError && err.status === 404) continue; // gone already
          d.log.warn({ err, media: mxc }, "could not delete expired media");
        }
      }
      // Copies of other servers' media: their own MedMesh deletes the originals.
      await d.admin.request(
        "POST",
        `/_synapse/admin/v1/purge_media_cache?before_ts=${String(now.getTime() - days(d.config.max_days))}`,
        {},
      );
      if (result.media_deleted > 0)
        await d.audit.record({
          actor: d.botUserId,
          action: "retention.media",
          object: d.serverName,
          outcome: "deleted",
          details: { count: result.media_deleted, policy },
        });
    } finally {
      await d.leases.release(LEASE, holder);
    }
    result.seconds = Number(process.hrtime.bigint() - started) / 1e9;
    lastSweep.set(result.seconds);
    d.log.info(result, "retention sweep finished");
    return result;
  };

  let running: Promise<SweepResult> | undefined;
  return {
    /** One sweep now (also what the schedule does); concurrent calls share the sweep in progress. */
    run(now = new Date()): Promise<SweepResult> {
      running ??= runOnce(now).finally(() => {
        running = undefined;
      });
      return running;
    },
  };
}
export type Sweeper = ReturnType<typeof createSweeper>;
