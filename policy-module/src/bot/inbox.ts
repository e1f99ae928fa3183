import type { Knex } from "knex";

/** A room event as Synapse pushes it to the appservice (client format). */
export type RawEvent = Readonly<Record<string, unknown>> & { event_id: string; room_id: string };

export interface InboxEntry {
  event: RawEvent;
  /** When it reached the inbox (ms): how long to wait for its room key is counted from here. */
  received_at: number;
}

export interface BotInbox {
  /** Records the events not seen before; durable when it returns (before the transaction's ack). */
  add(events: readonly RawEvent[], now?: number): Promise<number>;
  /** The oldest event not handled yet. */
  next(): Promise<InboxEntry | undefined>;
  /** The event was handled (or given up): it leaves the inbox and is remembered as handled. */
  done(eventId: string, now?: number): Promise<void>;
}

export interface InboxLimits {
  /** Handled events remembered at most (the newest), so a resent transaction is not handled twice. */
  keepHandled?: number;
  /** …and for at most this long (ms; Synapse resends a transaction only until it was acknowledged). */
  keepHandledMs?: number;
}

/**
 * The bot's durable inbox: one row per (bot, event) in `bot_inbox`. What the appservice
 * transactions brought waits here until the bot (on the replica that runs it) handled it, so the
 * transaction can be acknowledged at once and a crash loses nothing. Any replica may add (inserts
 * on conflict ignored: the same event from a resent transaction, on whichever replica, is one row).
 */
export function createBotInbox(knex: Knex, botUserId: string, limits: InboxLimits = {}): BotInbox {
  const keep = limits.keepHandled ?? 1000;
  const keepMs = limits.keepHandledMs ?? 7 * 86_400_000;
  const mine = () => knex("bot_inbox").where({ bot_user_id: botUserId });
  const prune = async (now: number): Promise<void> => {
    const cutoff: { seq: string | number } | undefined = await mine()
      .whereNotNull("handled_at")
      .orderBy("seq", "desc")
      .offset(keep)
      .first("seq");
    await mine()
      .whereNotNull("handled_at")
      .where((q) => {
        void q.where("handled_at", "<", now - keepMs);
        if (cutoff) void q.orWhere("seq", "<=", cutoff.seq);
      })
      .delete();
  };
  return {
    async add(events, now = Date.now()) {
      if (events.length === 0) return 0;
      const seen = new Set<string>();
      const rows = events
        .filter((e) => !seen.has(e.event_id) && seen.add(e.event_id))
        .map((e) => ({
          bot_user_id: botUserId,
          event_id: e.event_id,
          room_id: e.room_id,
          event: JSON.stringify(e),
          received_at: now,
        }));
      const inserted: unknown[] = await knex("bot_inbox")
        .insert(rows)
        .onConflict(["bot_user_id", "event_id"])
        .ignore()
        .returning("seq");
      return inserted.length;
    },
    async next() {
      const row: { event: string; received_at: string | number } | undefined = await mine()
        .whereNull("handled_at")
        .orderBy("seq")
        .first("event", "received_at");
      return row && { event: JSON.parse(row.event) as RawEvent, received_at: Number(row.received_at) };
    },
    async done(eventId, now = Date.now()) {
      await mine()
        .where({ event_id: eventId })
        .whereNull("handled_at")
        .update({ handled_at: now, event: "{}" });
      // The content (still encrypted) is not kept once handled; the ID is, for a while.
      await prune(now);
    },
  };
}
