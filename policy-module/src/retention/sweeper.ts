import { createHash } from "node:crypto";
import {
  createAuditLog,
  LeadershipLost,
  MatrixRequestError,
  RETENTION_REDACTION,
  type DocumentStore,
  type Leader,
  type SynapseAdmin,
  type AuditLog,
  type AsUser,
} from "@medmesh/common";
import type { Knex } from "knex";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { days, type RetentionConfig } from "./config.ts";
import { MESSAGE_TYPES, retentionIndex, type RetentionIndex } from "./event-index.ts";
import type { SweepHistory } from "./sweep-history.ts";

export interface SweepResult {
  ran: boolean;
  redacted: number;
  already_redacted: number;
  failed: number;
  /** Expired events of rooms another organisation administers: purged from our copy, not redacted. */
  forgotten: number;
  purged_rooms: number;
  media_deleted: number;
  /** Copies of other servers' media this server had fetched. */
  remote_media_deleted: number;
  seconds: number;
}

/** The MedMesh Synapse module's delete of remote media copies (synapse-module/remote_media.py). */
export const REMOTE_MEDIA_DELETE = "/_medmesh/synapse/v1/remote_media/delete";

/** The singleton job's name: its leader lease, and the document recording the run in progress. */
export const SWEEP_JOB = "retention-sweep";
/** Synapse deletes media by date in one request: a day's worth of a large hospital takes minutes. */
const MEDIA_TIMEOUT_MS = 30 * 60_000;

/** The sweep in progress, in the store: a standby that takes over continues it (same clock, same start). */
interface SweepRun {
  now: string;
  started_at: string;
  finished: boolean;
}

/** The same event always gets the same redaction transaction: a repeated request is a no-op. */
export const redactionTxnId = (eventId: string): string =>
  `medmesh-retention-${createHash("sha256").update(eventId).digest("hex").slice(0, 32)}`;

/**
 * The sweep: for every expired, un-kept event, redact it as the room-admin bot (so every server in
 * the room drops the content), then purge the room's local history up to the oldest point that
 * holds no kept event, then delete local media only expired events referred to. Each redaction is
 * journalled before it is sent; a sweep that finds a journalled one asks Synapse whether it went
 * out before sending it again, so a crash neither loses nor doubles a redaction.
 * It runs on the leader of SWEEP_JOB only: each batch is marked done and audited in one transaction
 * under the lease (the fence), and the run itself is recorded, so a standby taking over after the
 * leader died finishes it — every event redacted and audited once.
 */
export function createSweeper(d: {
  config: RetentionConfig;
  index: RetentionIndex;
  bot: AsUser;
  botUserId: string;
  admin: SynapseAdmin;
  serverName: string;
  leader: Leader;
  /** For the batch's transaction (marks and audit together) and the record of the run. */
  knex: Knex;
  documents: DocumentStore;
  audit: AuditLog;
  log: Logger;
  metrics: Registry;
  /** Brings the index up to date with rooms it cannot hear about as they happen (foreign ones). */
  beforeSweep?: () => Promise<void>;
  /** Tests: called after each redaction is sent, before it is marked done (a crash lands here). */
  afterRedaction?: (eventId: string) => Promise<void> | undefined;
  /** Where each sweep that ran is recorded (the console's status page). */
  history?: SweepHistory;
}) {
  const counted = new Counter({
    name: "medmesh_retention_events_total",
    help: "Events the retention sweep handled, by outcome (redacted, already_redacted, forgotten, failed)",
    labelNames: ["outcome"] as const,
    registers: [d.metrics],
  });
  const mediaDeleted = new Counter({
    name: "medmesh_retention_media_deleted_total",
    help: "Media files retention deleted: this server's uploads (local) and its copies of other servers' (remote)",
    labelNames: ["origin"] as const,
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
   * Where a room's local history may be purged up to (exclusive): the first event, oldest first,
   * that is a message which stays (kept or not yet expired) or a message the index has not seen
   * (stored by Synapse, its transaction not yet here). With neither, the room's newest event
   * (normally the bot's last redaction). Never a time: Synapse's `purge_up_to_ts` counts by when
   * it received events, and "now" would take unseen ones with it.
   */
  const purgePoint = async (roomId: string): Promise<string | undefined> => {
    const stays = await d.index.firstToStay(roomId);
    let last: string | undefined;
    let from: string | undefined;
    for (;;) {
      const q = new URLSearchParams({ dir: "f", limit: "200", ...(from ? { from } : {}) });
      const page = await d.admin.request<{
        chunk: { event_id: string; type: string; state_key?: string }[];
        end?: string;
      }>("GET", `/_synapse/admin/v1/rooms/${enc(roomId)}/messages?${q.toString()}`);
      const messages = page.chunk.filter((e) => MESSAGE_TYPES.has(e.type) && e.state_key === undefined);
      const known = await d.index.known(messages.map((e) => e.event_id));
      for (const e of page.chunk) {
        if (e.event_id === stays) return stays;
        if (MESSAGE_TYPES.has(e.type) && e.state_key === undefined && !known.has(e.event_id))
          return e.event_id;
        last = e.event_id;
      }
      if (page.chunk.length === 0 || !page.end || page.end === from) return last;
      from = page.end;
    }
  };

  const purge = async (roomId: string, upTo: string): Promise<boolean> => {
    try {
      const { purge_id } = await d.admin.request<{ purge_id: string }>(
        "POST",
        `/_synapse/admin/v1/purge_history/${enc(roomId)}`,
        { delete_local_events: true, purge_up_to_event_id: upTo },
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
   * Local media: what only redacted messages referred to goes now, unless room state names it (an
   * avatar); the rest goes by date through Synapse's own delete (attachments of encrypted messages
   * are invisible to the index: their mxc:// URI is inside the ciphertext), which keeps avatars
   * (`keep_profiles`) and protected media — the attachments of kept messages.
   * Copies of other servers' media: the same ones now, the rest by the time this server fetched
   * them (the MedMesh Synapse module's delete; Synapse's own purge goes by last access only).
   */
  const deleteMedia = async (
    redactedMedia: readonly string[],
    now: Date,
  ): Promise<{ local: number; remote: number }> => {
    const prefix = `mxc://${d.serverName}/`;
    const unreferenced = await d.index.unreferenced(redactedMedia);
    const named = await d.index.inState(unreferenced);
    const expired = unreferenced.filter((m) => !named.has(m));
    let local = 0;
    for (const mxc of expired.filter((m) => m.startsWith(prefix))) {
      try {
        await d.admin.request(
          "DELETE",
          `/_synapse/admin/v1/media/${enc(d.serverName)}/${enc(mxc.slice(prefix.length))}`,
        );
        local++;
      } catch (err) {
        if (err instanceof MatrixRequestError && err.status === 404) continue; // gone already
        d.log.warn({ err, media: mxc }, "could not delete expired media");
      }
    }
    for (const mxc of (await d.index.keptMedia()).filter((m) => m.startsWith(prefix))) {
      await d.admin.request("POST", `/_synapse/admin/v1/media/protect/${enc(mxc.slice(prefix.length))}`, {});
    }
    const before = now.getTime() - days(d.config.max_days);
    const byDate = await d.admin.request<{ total: number }>(
      "POST",
      `/_synapse/admin/v1/media/delete?before_ts=${String(before)}&keep_profiles=true`,
      {},
      { timeoutMs: MEDIA_TIMEOUT_MS },
    );
    const remote = await d.admin.request<{ deleted: number }>(
      "POST",
      REMOTE_MEDIA_DELETE,
      {
        fetched_before_ts: before,
        media: expired.filter((m) => !m.startsWith(prefix)),
      },
      { timeoutMs: MEDIA_TIMEOUT_MS },
    );
    return { local: local + byDate.total, remote: remote.deleted };
  };

  const runOnce = async (now: Date, resumed?: SweepRun): Promise<SweepResult> => {
    const started = process.hrtime.bigint();
    const startedAt = new Date();
    const result: SweepResult = {
      ran: false,
      redacted: 0,
      already_redacted: 0,
      failed: 0,
      forgotten: 0,
      purged_rooms: 0,
      media_deleted: 0,
      remote_media_deleted: 0,
      seconds: 0,
    };
    if (!d.leader.isLeader()) return result;
    result.ran = true;
    // A new run after one that could not be continued keeps its start: the purge then covers what
    // the unfinished one marked too.
    const stored = resumed ? undefined : await d.documents.get(SWEEP_JOB);
    const unfinished = stored ? (JSON.parse(stored) as SweepRun) : undefined;
    const run: SweepRun = resumed ?? {
      now: now.toISOString(),
      started_at: unfinished && !unfinished.finished ? unfinished.started_at : new Date().toISOString(),
      finished: false,
    };
    await d.documents.put(SWEEP_JOB, JSON.stringify(run));
    if (resumed) d.log.info({ started_at: run.started_at }, "continuing the sweep a previous leader began");
    const failed = new Set<string>();
    await d.beforeSweep?.();
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
        // Lost the lease: stop before the next item (the new leader continues the run).
        if (!d.leader.isLeader()) throw new LeadershipLost(SWEEP_JOB);
        try {
          if (e.foreign) {
            // Its home organisation redacts it for every server; this one purges its copy.
            result.forgotten++;
            counted.inc({ outcome: "forgotten" });
          } else if (e.redacting && (await isRedacted(e.room_id, e.event_id))) {
            result.already_redacted++;
            counted.inc({ outcome: "already_redacted" });
          } else {
            await d.index.markRedacting(e.event_id, new Date());
            await redact(e.room_id, e.event_id);
            await d.afterRedaction?.(e.event_id);
            result.redacted++;
            counted.inc({ outcome: "redacted" });
          }
          done.set(e.room_id, [...(done.get(e.room_id) ?? []), e.event_id]);
        } catch (err) {
          failed.add(e.event_id);
          result.failed++;
          counted.inc({ outcome: "failed" });
          d.log.warn({ err, room_id: e.room_id, event_id: e.event_id }, "could not redact an expired event");
        }
      }
      // The batch's checkpoint: marked done and audited in one transaction, under the lease. A
      // leader killed before it leaves the batch to its successor, which finds the redactions
      // sent (journalled) and audits them once.
      const at = new Date();
      await d.knex.transaction(async (trx) => {
        await d.leader.fence(trx);
        const index = retentionIndex(trx);
        const audit = createAuditLog(trx);
        for (const [roomId, eventIds] of done) {
          for (const id of eventIds) await index.markRedacted(id, at);
          const foreign = batch.some((e) => e.room_id === roomId && e.foreign);
          await audit.record({
            actor: d.botUserId,
            action: foreign ? "retention.forget" : "retention.redact",
            object: roomId,
            outcome: foreign ? "forgotten" : "redacted",
            details: { event_ids: eventIds, policy },
          });
        }
      });
      d.log.info({ redacted: result.redacted, failed: result.failed }, "retention sweep progress");
    }

    // What this run marked done, by whichever leader: a continued run purges for all of it.
    const marked = await d.index.redactedSince(new Date(run.started_at));
    const rooms = new Set(marked.map((e) => e.room_id));
    const media = new Set(marked.flatMap((e) => e.media));
    for (const roomId of rooms) {
      if (!d.leader.isLeader()) throw new LeadershipLost(SWEEP_JOB);
      const upTo = await purgePoint(roomId);
      if (upTo !== undefined && (await purge(roomId, upTo))) {
        result.purged_rooms++;
        await d.audit.record({
          actor: d.botUserId,
          action: "retention.purge",
          object: roomId,
          outcome: "purged",
          details: { up_to: { event_id: upTo }, policy },
        });
      }
    }

    if (!d.leader.isLeader()) throw new LeadershipLost(SWEEP_JOB);
    const deleted = await deleteMedia([...media], now);
    result.media_deleted = deleted.local;
    result.remote_media_deleted = deleted.remote;
    mediaDeleted.inc({ origin: "local" }, deleted.local);
    mediaDeleted.inc({ origin: "remote" }, deleted.remote);
    if (deleted.local + deleted.remote > 0)
      await d.audit.record({
        actor: d.botUserId,
        action: "retention.media",
        object: d.serverName,
        outcome: "deleted",
        details: { count: deleted.local, remote_copies: deleted.remote, policy },
      });
    await d.documents.put(SWEEP_JOB, JSON.stringify({ ...run, finished: true }));
    result.seconds = Number(process.hrtime.bigint() - started) / 1e9;
    lastSweep.set(result.seconds);
    await d.history
      ?.record(startedAt, result)
      .then(() => d.history?.pruneBefore(new Date(startedAt.getTime() - 366 * 86_400_000)))
      .catch((err: unknown) => {
        d.log.warn({ err }, "could not record the sweep in its history");
      });
    d.log.info(result, "retention sweep finished");
    return result;
  };

  let running: Promise<SweepResult> | undefined;
  const start = (now: Date, resumed?: SweepRun): Promise<SweepResult> => {
    running ??= runOnce(now, resumed).finally(() => {
      running = undefined;
    });
    return running;
  };
  return {
    /** One sweep now (also what the schedule does); concurrent calls share the sweep in progress. */
    run: (now = new Date()): Promise<SweepResult> => start(now),
    /** On election: the sweep a previous leader left unfinished, continued (undefined: none). */
    async resume(): Promise<SweepResult | undefined> {
      const stored = await d.documents.get(SWEEP_JOB);
      const run = stored ? (JSON.parse(stored) as SweepRun) : undefined;
      if (!run || run.finished) return undefined;
      return start(new Date(run.now), run);
    },
  };
}
export type Sweeper = ReturnType<typeof createSweeper>;
