import {
  type AppserviceEvent,
  type DocumentStore,
  type Leader,
  type SynapseAdmin,
  createAuditLog,
  asUser,
} from "@medmesh/common";
import cron, { type ScheduledTask } from "node-cron";
import type { Knex } from "knex";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { days, RETENTION_EVENT, type RetentionConfig } from "./config.ts";
import { createBackfill } from "./backfill.ts";
import { indexEntry, retentionIndex, stateMediaOf } from "./event-index.ts";
import { createSweeper } from "./sweeper.ts";
import { sweepHistory } from "./sweep-history.ts";
import { handledEvents } from "../handled-events.ts";

export { RETENTION_EVENT };

interface Event extends AppserviceEvent {
  sender?: string;
  origin_server_ts?: number;
  state_key?: string;
  content?: Record<string, unknown>;
}

/**
 * Retention: indexes message-like events (metadata only), follows pins as keeps and rooms'
 * `m.room.retention` within the organisation's bounds, and sweeps on a schedule.
 */
export function startRetention(
  config: RetentionConfig,
  d: {
    knex: Knex;
    /** The sweep's (SWEEP_JOB): it runs on the elected leader, and a new leader continues it. */
    leader: Leader;
    documents: DocumentStore;
    homeserverUrl: string;
    asToken: string;
    botUserId: string;
    admin: SynapseAdmin;
    serverName: string;
    log: Logger;
    metrics: Registry;
  },
) {
  const index = retentionIndex(d.knex);
  const audit = createAuditLog(d.knex);
  const bot = asUser(d.homeserverUrl, d.asToken, d.botUserId);
  const log = d.log.child({ component: "retention" });
  const [minMs, maxMs, defaultMs] = [days(config.min_days), days(config.max_days), days(config.default_days)];
  const backfill = createBackfill({
    index,
    admin: d.admin,
    botUserId: d.botUserId,
    bounds: { minMs, maxMs },
    log,
  });
  // Rooms that came to this server since the last sweep, and what foreign rooms said since.
  const beforeSweep = async (): Promise<void> => {
    await backfill.all();
    await backfill.refreshForeign();
  };
  const history = sweepHistory(d.knex);
  const sweeper = createSweeper({ ...d, config, index, bot, audit, log, beforeSweep, history });
  const enc = encodeURIComponent;
  const setRoomPolicy = (roomId: string, ms: number) =>
    bot("PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/state/${RETENTION_EVENT}/`, { max_lifetime: ms });

  const onPins = async (e: Event, roomId: string): Promise<void> => {
    const pinned = new Set(
      Array.isArray(e.content?.pinned) ? e.content.pinned.filter((p) => typeof p === "string") : [],
    );
    const before = await index.pins(roomId);
    const by = e.sender ?? "";
    for (const eventId of pinned) {
      if (before.has(eventId)) continue;
      await index.keep(roomId, eventId, by, new Date());
      await audit.record({
        actor: by,
        action: "retention.keep",
        object: eventId,
        outcome: "kept",
        details: { room_id: roomId },
      });
    }
    for (const eventId of before.keys()) {
      if (pinned.has(eventId)) continue;
      await index.unkeep(roomId, eventId);
      await audit.record({
        actor: by,
        action: "retention.unkeep",
        object: eventId,
        outcome: "unkept",
        details: { room_id: roomId },
      });
    }
  };

  /** A room's own period: shorter within the bounds is honoured; anything else is set back. */
  const onRoomPolicy = async (e: Event, roomId: string): Promise<void> => {
    const ms = e.content?.max_lifetime;
    const fits = typeof ms === "number" && ms >= minMs && ms <= maxMs;
    if (fits) {
      await index.setRoomPeriod(roomId, ms === defaultMs ? null : ms);
      if (e.sender !== d.botUserId)
        await audit.record({
          actor: e.sender ?? "",
          action: "retention.room_policy",
          object: roomId,
          outcome: "accepted",
          details: { max_lifetime: ms },
        });
      return;
    }
    const current = (await index.roomPeriod(roomId)) ?? defaultMs;
    await audit.record({
      actor: e.sender ?? "",
      action: "retention.room_policy",
      object: roomId,
      outcome: "refused",
      details: { max_lifetime: ms ?? null },
    });
    await setRoomPolicy(roomId, current);
    await bot(
      "PUT",
      `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/retention-${enc(e.event_id ?? "")}`,
      {
        msgtype: "m.notice",
        body: `This room's retention period must be between ${String(config.min_days)} and ${String(config.max_days)} days; MedMesh set it back to ${String(current / 86_400_000)} days.`,
      },
    );
  };

  /**
   * The bot joined: what was sent before is indexed, and the room gets the organisation's policy
   * unless it carries a valid one.
   */
  const onBotJoined = async (roomId: string): Promise<void> => {
    if (!(await index.isBackfilled(roomId))) await backfill.room(roomId);
    const existing = await bot<{ max_lifetime?: unknown }>(
      "GET",
      `/_matrix/client/v3/rooms/${enc(roomId)}/state/${RETENTION_EVENT}/`,
    ).catch(() => undefined);
    const ms = existing?.max_lifetime;
    if (typeof ms === "number" && ms >= minMs && ms <= maxMs)
      await index.setRoomPeriod(roomId, ms === defaultMs ? null : ms);
    else await setRoomPolicy(roomId, defaultMs);
  };

  /**
   * The room was upgraded: the bot follows into the successor (as admin, through the admin API,
   * since an upgrade carries over power levels but not memberships); its join then indexes it.
   */
  const onUpgraded = async (e: Event, roomId: string): Promise<void> => {
    const successor = e.content?.replacement_room;
    if (typeof successor !== "string") return;
    await d.admin.request("POST", `/_synapse/admin/v1/rooms/${enc(successor)}/make_room_admin`, {
      user_id: d.botUserId,
    });
    await audit.record({
      actor: d.botUserId,
      action: "retention.follow_upgrade",
      object: successor,
      outcome: "joined",
      details: { predecessor: roomId },
    });
  };

  // A reaction (audited, with messages and state of its own) runs once per event, however often
  // the event is handed over; the index above is idempotent by itself.
  const reacted = handledEvents();
  let task: ScheduledTask | undefined;
  return {
    index,
    sweeper,
    backfill,
    async onEvents(events: readonly AppserviceEvent[]): Promise<void> {
      for (const e of events as Event[]) {
        const roomId = e.room_id;
        if (!roomId || !e.event_id) continue;
        const entry = indexEntry(e);
        if (entry) {
          await index.add(entry);
          continue;
        }
        if (e.state_key !== undefined)
          await index.addStateMedia(stateMediaOf(e.content), roomId, e.type, new Date());
        if (e.state_key !== "" && !(e.type === "m.room.member" && e.state_key === d.botUserId)) continue;
        if (reacted.has(e.event_id)) continue;
        try {
          if (e.type === "m.room.pinned_events") await onPins(e, roomId);
          else if (e.type === RETENTION_EVENT) await onRoomPolicy(e, roomId);
          else if (e.type === "m.room.member" && e.content?.membership === "join") await onBotJoined(roomId);
          else if (e.type === "m.room.tombstone") await onUpgraded(e, roomId);
          reacted.add(e.event_id);
        } catch (err) {
          // The index above is what must not be lost; a policy reaction is retried by the next event.
          log.warn({ err, room_id: roomId, type: e.type }, "retention could not react to an event");
        }
      }
    },
    start() {
      if (!config.enabled) return;
      backfill.all().catch((err: unknown) => {
        log.error({ err }, "indexing the rooms that existed before MedMesh failed");
      });
      task = cron.schedule(config.schedule, () => {
        sweeper.run().catch((err: unknown) => {
          log.error({ err }, "retention sweep failed");
        });
      });
      // A standby taking over (or a restart in its own place) finishes what the last leader began.
      d.leader.onElected(() => {
        sweeper.resume().catch((err: unknown) => {
          log.error({ err }, "continuing the interrupted retention sweep failed");
        });
      });
    },
    async stop() {
      await task?.stop();
    },
  };
}
export type Retention = ReturnType<typeof startRetention>;
