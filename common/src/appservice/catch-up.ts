import type { Knex } from "knex";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import type { AsUser } from "../synapse/as-user.ts";
import type { AppserviceEvent } from "./transactions.ts";

/** Set in `unsigned` of an event a catch-up handed over (Synapse had not sent it yet). */
export const CAUGHT_UP = "org.medmesh.caught_up";

/** How far back (events) a catch-up looks: first, and at most. */
const FIRST_LOOK = 3;
const LONG_LOOK = 50;
/** Catch-up runs for this long after a sign that Synapse may be recovering. */
const SUSPECT_WINDOW_MS = 60_000;
/** An event this old when it arrives was held back by Synapse (it is recovering). */
const HELD_BACK_MS = 2_000;
/** How long the IDs of caught-up events are kept to drop their late copies. */
const KEEP_CAUGHT_UP_MS = 30 * 86_400_000;

export type RoomEvent = AppserviceEvent & {
  origin_server_ts?: number;
  content?: Record<string, unknown>;
  unsigned?: Record<string, unknown> & { age?: number };
};

export const isCaughtUp = (e: AppserviceEvent): boolean => (e as RoomEvent).unsigned?.[CAUGHT_UP] === true;

export interface CatchUp {
  /** Drops the caught-up IDs kept past their time; learns whether any are kept. */
  init(): Promise<void>;
  /** The service takes transactions from now on (its start is done). */
  ready(): void;
  /** A sign of a recovery from outside (a transaction the service failed). */
  suspect(): void;
  /**
   * The events to hand the service for a transaction: per room, what Synapse has not sent yet
   * (marked with `CAUGHT_UP`), then the transaction's own, less those a catch-up handed over.
   */
  prepare(events: readonly AppserviceEvent[]): Promise<AppserviceEvent[]>;
  /** The service handled these events (the transaction will be acknowledged). */
  handled(events: readonly AppserviceEvent[]): Promise<void>;
}

/**
 * Synapse can hand over a transaction late: one created while it finished recovering from the
 * service being down waits for the next failure, and the transactions after it arrive first
 * (synapse/appservice/scheduler.py, `_TransactionController.send` vs `_Recoverer.retry`). So
 * before the first event of a transaction in a room, the frame reads what the room holds between
 * it and the last event the service handled there (`/context`, as the service's reader in the
 * room) and hands the missing ones over first. The late transaction, when it comes, brings them
 * again: those copies are dropped.
 *
 * A `/context` costs 7–40 ms, and the race only follows a recovery, so the frame looks only while
 * Synapse may be recovering — after a transaction the service failed, one carrying events created
 * before the service was ready (Synapse stored them while it was down), or events Synapse held
 * back (`unsigned.age` ≥ 2 s) — for a minute after that, then once more per room on its next
 * transaction (a held-back transaction surfaces only at the next failure). A start with nothing
 * stored at Synapse is no recovery and costs nothing.
 */
export function createCatchUp(d: {
  service: string;
  knex: Knex;
  /** The client API as one of the appservice's users. */
  as: (userId: string) => AsUser;
  /** A user the appservice can act as who can read the room, or undefined: no catch-up there. */
  readerFor: ((roomId: string) => Promise<string | undefined>) | undefined;
  log: Logger;
  metrics: Registry;
}): CatchUp {
  const catchUps = new Counter({
    name: "medmesh_appservice_catch_ups_total",
    help: "Looks through a room for events Synapse had not sent yet (after signs of a recovery), by outcome",
    labelNames: ["outcome"] as const,
    registers: [d.metrics],
  });
  const positions = () => d.knex("appservice_room_positions");
  const caughtUp = () => d.knex("appservice_caught_up");
  let suspectSince = -Infinity;
  /** Until the service is ready, every transaction is suspect. */
  let readyAt = Infinity;
  const checkedAt = new Map<string, number>();
  /** Whether caught-up IDs are kept (else a transaction needs no look-up for them). */
  let keptCaughtUp = true;

  /**
   * Synapse states an event's age when it sends the transaction, so an event looks younger here by
   * the time on the way; one Synapse stored while the service was down is older than its
   * listener, and the ping and start between listening and `ready` absorb that.
   */
  const recovering = (events: readonly RoomEvent[]): boolean => {
    const now = Date.now();
    return events.some((e) => {
      const age = e.unsigned?.age ?? 0;
      return age >= HELD_BACK_MS || now - age < readyAt;
    });
  };
  const needsCatchUp = (roomId: string): boolean => {
    const windowEnd = suspectSince + SUSPECT_WINDOW_MS;
    return Date.now() < windowEnd || (checkedAt.get(roomId) ?? 0) < windowEnd;
  };

  /** What the room holds between the last handled event and `first`, oldest first; undefined: not looked. */
  const missingBefore = async (roomId: string, first: RoomEvent): Promise<RoomEvent[] | undefined> => {
    const last = await positions()
      .where({ service: d.service, room_id: roomId })
      .first<{ event_id: string; origin_ts: string | number } | undefined>("event_id", "origin_ts");
    if (!last || last.event_id === first.event_id) return undefined;
    const lastTs = Number(last.origin_ts);
    // Older than what the service handled: this is itself a late event, nothing is missing before it.
    if (first.origin_server_ts !== undefined && first.origin_server_ts < lastTs) return undefined;
    const reader = await d.readerFor?.(roomId);
    if (!reader || !first.event_id) return undefined;
    // Usually the last handled event is right before this one: a short look first, a long one only
    // when it is not there. Members are lazy-loaded (the state in the answer stays small).
    const look = async (before: number) => {
      const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/context/${encodeURIComponent(first.event_id ?? "")}`;
      const query = `limit=${String(2 * before)}&filter=${encodeURIComponent('{"lazy_load_members":true}')}`;
      const { events_before = [] } = await d.as(reader)<{ events_before?: RoomEvent[] }>(
        "GET",
        `${path}?${query}`,
      );
      const i = events_before.findIndex((e) => e.event_id === last.event_id);
      return { events: events_before, at: i };
    };
    let seen = await look(FIRST_LOOK);
    if (seen.at < 0) seen = await look(LONG_LOOK);
    // Not within reach: what is not older than the last handled event.
    const missing =
      seen.at >= 0
        ? seen.events.slice(0, seen.at)
        : seen.events.filter((e) => e.event_id !== last.event_id && (e.origin_server_ts ?? 0) >= lastTs);
    return missing.reverse();
  };

  return {
    async init() {
      await caughtUp()
        .where({ service: d.service })
        .where("caught_up_at", "<", new Date(Date.now() - KEEP_CAUGHT_UP_MS))
        .delete();
      keptCaughtUp = (await caughtUp().where({ service: d.service }).first("event_id")) !== undefined;
    },
    ready() {
      readyAt = Date.now();
    },
    suspect() {
      suspectSince = Date.now();
    },
    async prepare(events) {
      if (recovering(events)) suspectSince = Date.now();
      let own = events as RoomEvent[];
      const ids = own.flatMap((e) => (e.event_id ? [e.event_id] : []));
      if (keptCaughtUp && ids.length > 0) {
        const known = new Set(
          await caughtUp().where({ service: d.service }).whereIn("event_id", ids).pluck<string[]>("event_id"),
        );
        if (known.size > 0) {
          own = own.filter((e) => !e.event_id || !known.has(e.event_id));
          d.log.info(
            { events: known.size },
            "dropped events of a late transaction that a catch-up handed over",
          );
        }
      }
      const inTransaction = new Set(ids);
      const missing: RoomEvent[] = [];
      const looked = new Set<string>();
      for (const e of own) {
        const roomId = e.room_id;
        if (!roomId || !e.event_id || looked.has(roomId)) continue;
        looked.add(roomId);
        if (!needsCatchUp(roomId)) continue;
        checkedAt.set(roomId, Date.now());
        // Best effort: the transaction's own events are handled whatever happens here.
        try {
          const found = await missingBefore(roomId, e);
          if (!found) continue;
          const fresh = found.filter((m) => m.event_id && !inTransaction.has(m.event_id));
          catchUps.inc({ outcome: fresh.length > 0 ? "found_missing" : "nothing_missing" });
          if (fresh.length === 0) continue;
          d.log.warn(
            { room_id: roomId, event_ids: fresh.map((m) => m.event_id) },
            "handing over events Synapse had not sent yet",
          );
          for (const m of fresh)
            missing.push({ ...m, room_id: roomId, unsigned: { ...m.unsigned, [CAUGHT_UP]: true } });
        } catch (err) {
          catchUps.inc({ outcome: "failed" });
          d.log.warn({ err, room_id: roomId }, "could not look for events Synapse had not sent yet");
        }
      }
      return [...missing, ...own];
    },
    async handled(events) {
      const newest = new Map<string, { event_id: string; origin_ts: number }>();
      const recovered: { event_id: string; room_id: string }[] = [];
      for (const e of events as RoomEvent[]) {
        if (!e.room_id || !e.event_id) continue;
        if (isCaughtUp(e)) recovered.push({ event_id: e.event_id, room_id: e.room_id });
        const ts = e.origin_server_ts;
        const known = newest.get(e.room_id);
        if (ts !== undefined && (!known || ts >= known.origin_ts))
          newest.set(e.room_id, { event_id: e.event_id, origin_ts: ts });
      }
      if (newest.size === 0 && recovered.length === 0) return;
      const now = new Date();
      await d.knex.transaction(async (trx) => {
        if (newest.size > 0)
          await trx("appservice_room_positions")
            .insert(
              [...newest].map(([room_id, p]) => ({ service: d.service, room_id, ...p, updated_at: now })),
            )
            .onConflict(["service", "room_id"])
            .merge(["event_id", "origin_ts", "updated_at"])
            // A late event does not move the position back.
            .where("appservice_room_positions.origin_ts", "<=", trx.ref("excluded.origin_ts"));
        if (recovered.length > 0)
          await trx("appservice_caught_up")
            .insert(recovered.map((r) => ({ service: d.service, ...r, caught_up_at: now })))
            .onConflict(["service", "event_id"])
            .ignore();
      });
      if (recovered.length > 0) keptCaughtUp = true;
    },
  };
}
