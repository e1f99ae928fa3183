import type { AppserviceEvent } from "@medmesh/common";
import type { Knex } from "knex";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import type { Portal } from "../store/index.ts";
import type { MatrixSide } from "./matrix.ts";

/*
 * The catch-up on late transactions, as it was in outbound.ts, moved unchanged so that it can go
 * as a whole when the appservice frame (common/) takes it over: this file, and the three calls in
 * record.ts (`suspect`, `ready`, `beforeEvent`). It keeps its one query of bridge_outbound inline
 * for the same reason (no repository method outlives it).
 */

/** How far back (events) the bridge looks for events Synapse has not sent yet: first, at most. */
const CATCH_UP_FIRST_LOOK = 3;
const CATCH_UP_EVENTS = 50;
/** Catch-up runs for this long after a sign that Synapse may be recovering. */
const SUSPECT_WINDOW_MS = 60_000;
/** An event this old when it arrives was held back by Synapse (it is recovering). */
const HELD_BACK_MS = 2_000;

export type RawEvent = AppserviceEvent & {
  content?: Record<string, unknown>;
  redacts?: string;
  unsigned?: { age?: number };
};

export function lateTransactionCatchUp(d: {
  knex: Knex;
  matrix: MatrixSide;
  log: Logger;
  metrics: Registry;
  roomGhosts: (roomId: string) => Promise<string[]>;
  isEcho: (e: RawEvent) => boolean;
  recorded: (key: string) => Promise<boolean>;
  recordEvent: (
    portal: Portal,
    raw: RawEvent & { room_id: string; event_id: string },
    at: Date,
  ) => Promise<boolean>;
}) {
  const { roomGhosts, isEcho, recorded, recordEvent } = d;
  /**
   * Synapse can hand over a transaction late: one created while it finished recovering from the
   * bridge being down waits for the next failure, and the transactions after it arrive first
   * (synapse/appservice/scheduler.py, `_TransactionController.send` vs `_Recoverer.retry`). So
   * before the first event of a transaction in a portal, the bridge reads what the room holds
   * between it and the last event it recorded there, and records what is missing first: order
   * and completeness come from the room, not from the order transactions arrive in. The late
   * transaction, when it comes, adds nothing (events are keyed by ID).
   */
  const catchUp = async (portal: Portal, eventId: string, at: Date): Promise<number> => {
    const last = await d
      .knex("bridge_outbound")
      .where({ vendor: portal.vendor, conversation_id: portal.conversation_id })
      .where("idempotency_key", "like", "mx-$%")
      .orderBy("seq", "desc")
      .first<{ idempotency_key: string } | undefined>("idempotency_key");
    const reader = (await roomGhosts(portal.room_id))[0];
    if (!last || !reader) return 0;
    const lastId = last.idempotency_key.slice(3);
    // Usually the last recorded event is right before this one: a short look first, a long one
    // only when it is not there. Members are lazy-loaded (the state in the answer stays small).
    const look = async (before: number) => {
      const path = `/_matrix/client/v3/rooms/${encodeURIComponent(portal.room_id)}/context/${encodeURIComponent(eventId)}`;
      const query = `limit=${String(2 * before)}&filter=${encodeURIComponent('{"lazy_load_members":true}')}`;
      const { events_before = [] } = await d.matrix.call<{ events_before?: RawEvent[] }>(
        reader,
        "GET",
        `${path}?${query}`,
      );
      const i = events_before.findIndex((e) => e.event_id === lastId);
      return { events: i < 0 ? events_before : events_before.slice(0, i), found: i >= 0 };
    };
    let seen = await look(CATCH_UP_FIRST_LOOK);
    if (!seen.found) seen = await look(CATCH_UP_EVENTS);
    if (seen.events.some((e) => e.type === "m.room.member")) d.matrix.membershipChanged(portal.room_id);
    const missing = seen.events.filter((e) => !isEcho(e));
    let added = 0;
    // Most of what the long look returns was recorded long ago: skip it before decrypting.
    for (const e of missing.reverse())
      if (
        e.event_id &&
        !(await recorded(`mx-${e.event_id}`)) &&
        (await recordEvent(portal, { ...e, room_id: portal.room_id, event_id: e.event_id }, at))
      ) {
        added++;
        d.log.warn(
          { room_id: portal.room_id, event_id: e.event_id },
          "recorded an event Synapse had not sent yet",
        );
      }
    return added;
  };
  const catchUps = new Counter({
    name: "medmesh_bridge_catch_ups_total",
    help: "Looks through a portal for events Synapse had not sent yet (after signs of a recovery), by outcome",
    labelNames: ["outcome"] as const,
    registers: [d.metrics],
  });

  /**
   * Catch-up costs a /context per transaction (7 ms on a quiet Synapse, 40 ms on a busy one), and
   * the race only follows a recovery: Synapse had a transaction fail (the bridge was down, or
   * answered an error) and now retries what it stored. So the bridge catches up while Synapse may
   * be recovering, and for a minute after; then once more per portal, on its next transaction (a
   * held-back transaction surfaces only when Synapse next fails, so the gap can show up much
   * later). Signs of a recovery: a transaction the bridge failed; a transaction carrying events
   * created before this bridge was ready (Synapse stored them while it was down); one carrying
   * events Synapse held back (`unsigned.age` ≥ 2 s). A start with nothing stored at Synapse is no
   * recovery: the bridge does not catch up after it.
   */
  let suspectSince = -Infinity;
  /** When this bridge could take transactions (until then, every transaction is suspect). */
  let readyAt = Infinity;
  const checkedAt = new Map<string, number>();
  const suspect = (): void => {
    suspectSince = Date.now();
  };
  /**
   * Synapse states an event's age when it sends the transaction, so an event looks younger here by
   * the time on the way; one Synapse stored while the bridge was down is older than the bridge's
   * listener, and the ping and start between listening and `ready` (tens of ms) absorb that.
   */
  const recovering = (events: readonly RawEvent[]): boolean => {
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

  /** Before the first event of a transaction in a portal: what Synapse may not have sent yet. */
  const beforeEvent = async (
    portal: Portal,
    raw: RawEvent & { room_id: string; event_id: string },
    at: Date,
    caughtUp: Set<string>,
  ): Promise<void> => {
    if (!caughtUp.has(raw.room_id) && needsCatchUp(raw.room_id)) {
      caughtUp.add(raw.room_id);
      checkedAt.set(raw.room_id, Date.now());
      // Best effort: the transaction's own events are recorded whatever happens here.
      await catchUp(portal, raw.event_id, at).then(
        (added) => {
          catchUps.inc({ outcome: added > 0 ? "recorded_missing" : "nothing_missing" });
        },
        (err: unknown) => {
          catchUps.inc({ outcome: "failed" });
          d.log.warn({ err, room_id: raw.room_id }, "could not look for events Synapse had not sent yet");
        },
      );
    }
  };

  /** The bridge takes transactions from now on (its listener is up, its start is done). */
  const ready = (): void => {
    readyAt = Date.now();
  };

  return { suspect, recovering, needsCatchUp, ready, beforeEvent };
}
