import type { Express } from "express";
import type { Knex } from "knex";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import type { AuditLog } from "../audit/index.ts";
import { adminActorOf } from "../http/auth.ts";
import { ApiError, asyncHandler } from "../http/errors.ts";
import { MatrixRequestError } from "../synapse/accounts.ts";
import type { AsUser } from "../synapse/as-user.ts";
import { isPermanent, Permanent } from "./failures.ts";
import type { AppserviceEvent, EventHandler } from "./transactions.ts";

const TABLE = "appservice_dead_letters";
/** Errors are what the service said about the failure, never content; kept short all the same. */
const MAX_ERROR = 500;

export interface DeadLetter {
  event_id: string;
  room_id: string;
  type: string;
  sender: string;
  state_key: string | null;
  error: string;
  attempts: number;
  first_failed_at: string;
  last_failed_at: string;
}

const COLUMNS = [
  "event_id",
  "room_id",
  "type",
  "sender",
  "state_key",
  "error",
  "attempts",
  "first_failed_at",
  "last_failed_at",
];
type Row = Omit<DeadLetter, "attempts" | "first_failed_at" | "last_failed_at"> & {
  /** A string where the driver returns one. */
  attempts: number | string;
  first_failed_at: Date | string;
  last_failed_at: Date | string;
};
const toDeadLetter = (r: Row): DeadLetter => ({
  ...r,
  attempts: Number(r.attempts),
  first_failed_at: new Date(r.first_failed_at).toISOString(),
  last_failed_at: new Date(r.last_failed_at).toISOString(),
});

export interface DeadLetters {
  /**
   * Hands the events to the handler. When it fails permanently, they are handed over one by one:
   * each that fails permanently becomes a dead letter and the rest go on. A transient failure
   * throws (the transaction is answered 500 and Synapse sends it again). Returns the dead letters.
   */
  handle(
    events: readonly AppserviceEvent[],
    transaction: Readonly<Record<string, unknown>>,
    handler: EventHandler,
  ): Promise<number>;
  list(limit?: number): Promise<DeadLetter[]>;
  /** Fetches the event from the homeserver again and hands it to the handler. */
  /** Hands the event to the service again; `actor` (the admin who asked) is the audit record's actor. */
  retry(
    eventId: string,
    handler: EventHandler,
    actor?: string,
  ): Promise<{ outcome: "handled" | "failed"; error?: string }>;
}

/**
 * Dead letters of the appservice frame: an event a service cannot act on (a permanent failure,
 * e.g. a ghost whose join Matrix refuses) must not block the events behind it, since Synapse
 * resends a failed transaction, and everything after it, until it succeeds. It is recorded
 * (metadata only), audited, counted, and can be retried through the admin API.
 */
export function createDeadLetters(d: {
  service: string;
  knex: Knex;
  audit: AuditLog;
  /** The appservice's own user: the actor in the audit log. */
  botUserId: string;
  as: (userId: string) => AsUser;
  readerFor: ((roomId: string) => Promise<string | undefined>) | undefined;
  /** Whether the appservice may act as this user (its user namespace). */
  isOwnUser: (userId: string) => boolean;
  log: Logger;
  metrics: Registry;
}): DeadLetters {
  const rows = () => d.knex(TABLE).where({ service: d.service });
  const counter = new Counter({
    name: "medmesh_appservice_dead_letters_total",
    help: "Events a service could not act on (dead_lettered), and retries of them (retry_handled, retry_failed)",
    labelNames: ["outcome"] as const,
    registers: [d.metrics],
  });
  new Gauge({
    name: "medmesh_appservice_dead_letters",
    help: "Dead letters waiting for an operator (retry through the admin API)",
    registers: [d.metrics],
    async collect() {
      const [row] = await rows().count<{ n: string }[]>({ n: "*" });
      this.set(Number(row?.n ?? 0));
    },
  });
  const reason = (err: unknown) => (err instanceof Error ? err.message : String(err)).slice(0, MAX_ERROR);

  const record = async (e: AppserviceEvent, err: unknown): Promise<void> => {
    const error = reason(err);
    const now = new Date();
    const eventId = e.event_id ?? "";
    const updated = await rows()
      .where({ event_id: eventId })
      .update({ error, last_failed_at: now, attempts: d.knex.raw("attempts + 1") });
    if (updated === 0) {
      await d
        .knex(TABLE)
        .insert({
          service: d.service,
          event_id: eventId,
          room_id: e.room_id ?? "",
          type: e.type,
          sender: e.sender ?? "",
          state_key: e.state_key ?? null,
          error,
          attempts: 1,
          first_failed_at: now,
          last_failed_at: now,
        })
        .onConflict(["service", "event_id"])
        .ignore();
      await d.audit.record({
        actor: d.botUserId,
        action: "appservice.dead_letter",
        object: eventId,
        outcome: "dead_lettered",
        details: { service: d.service, room_id: e.room_id ?? null, type: e.type, error },
      });
    }
    counter.inc({ outcome: "dead_lettered" });
    d.log.warn(
      { event_id: eventId, room_id: e.room_id, type: e.type, reason: error },
      "an event the service cannot act on is a dead letter; the transaction goes on",
    );
  };

  /** The event as the homeserver has it, read as the first of the appservice's users who can. */
  const fetchEvent = async (row: DeadLetter): Promise<AppserviceEvent> => {
    const readers = [
      await d.readerFor?.(row.room_id),
      ...[row.state_key, row.sender].filter((u): u is string => !!u && d.isOwnUser(u)),
      d.botUserId,
    ];
    const path = `/_matrix/client/v3/rooms/${encodeURIComponent(row.room_id)}/event/${encodeURIComponent(row.event_id)}`;
    const refusals: string[] = [];
    for (const reader of new Set(readers.filter((u): u is string => !!u))) {
      try {
        const event = await d.as(reader)<AppserviceEvent>("GET", path);
        return { ...event, room_id: row.room_id };
      } catch (err) {
        // Another reader may be in the room; a homeserver that is down is no refusal.
        if (!(err instanceof MatrixRequestError) || err.status >= 500 || err.status === 429) throw err;
        refusals.push(`${reader}: ${err.errcode}`);
      }
    }
    throw new Permanent(`the homeserver did not give the event to any reader (${refusals.join(", ")})`);
  };

  return {
    async handle(events, transaction, handler) {
      try {
        await handler(events, transaction);
        return 0;
      } catch (err) {
        if (!isPermanent(err)) throw err;
        d.log.warn(
          { reason: reason(err) },
          "a transaction failed permanently: handling its events one by one",
        );
      }
      let dead = 0;
      for (const e of events) {
        try {
          await handler([e], { events: [e] });
        } catch (err) {
          if (!isPermanent(err)) throw err;
          if (!e.event_id) {
            d.log.warn(
              { type: e.type, reason: reason(err) },
              "dropped an event without ID the service refused",
            );
            continue;
          }
          await record(e, err);
          dead++;
        }
      }
      // What the transaction carries besides room events (receipts, to-device), once.
      const { events: _events, ...rest } = transaction;
      if (Object.keys(rest).length > 0)
        await handler([], { ...rest, events: [] }).catch((err: unknown) => {
          if (!isPermanent(err)) throw err;
          d.log.warn({ reason: reason(err) }, "dropped a transaction's ephemeral data the service refused");
        });
      return dead;
    },
    async list(limit = 500) {
      return (await rows().orderBy("first_failed_at").limit(limit).select<Row[]>(COLUMNS)).map(toDeadLetter);
    },
    async retry(eventId, handler, actor) {
      const found = await rows().where({ event_id: eventId }).first<Row | undefined>(COLUMNS);
      const row = found && toDeadLetter(found);
      if (!row) throw new ApiError("M_NOT_FOUND", "No dead letter with this event ID");
      const retried = async (outcome: "handled" | "failed", error?: string) => {
        counter.inc({ outcome: outcome === "handled" ? "retry_handled" : "retry_failed" });
        await d.audit.record({
          actor: actor ?? d.botUserId,
          ...(actor ? { on_behalf_of: d.botUserId } : {}),
          action: "appservice.dead_letter_retry",
          object: eventId,
          outcome,
          details: { service: d.service, room_id: row.room_id, type: row.type, ...(error ? { error } : {}) },
        });
      };
      try {
        const event = await fetchEvent(row);
        await handler([event], { events: [event] });
      } catch (err) {
        if (!isPermanent(err)) throw err;
        const error = reason(err);
        await rows()
          .where({ event_id: eventId })
          .update({ error, last_failed_at: new Date(), attempts: d.knex.raw("attempts + 1") });
        await retried("failed", error);
        return { outcome: "failed", error };
      }
      await rows().where({ event_id: eventId }).delete();
      await retried("handled");
      return { outcome: "handled" };
    },
  };
}

/** The dead letters on the internal listener (admins only, the frame's default). */
export function mountDeadLetterApi(app: Express, deadLetters: DeadLetters, handler: EventHandler): void {
  app.get(
    "/_medmesh/admin/v1/appservice/dead-letters",
    asyncHandler(async (_req, res) => {
      res.json({ dead_letters: await deadLetters.list() });
    }),
  );
  app.post(
    "/_medmesh/admin/v1/appservice/dead-letters/:eventId/retry",
    asyncHandler(async (req, res) => {
      res.json(await deadLetters.retry(String(req.params.eventId), handler, adminActorOf(req)));
    }),
  );
}
