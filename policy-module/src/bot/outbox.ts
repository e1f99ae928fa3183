import type { Knex } from "knex";

export interface OutboxEntry {
  seq: number;
  user_id: string;
  text: string;
}

/**
 * What a bot must tell users, one row per notice in `bot_outbox`: any replica queues (an insert,
 * so concurrent notices are all kept), the replica that runs the bot sends them in order once the
 * user is in their direct chat, and deletes each after it was sent. A notice is sent with a
 * transaction ID derived from its row, so one sent again after a crash is the same event.
 */
export function createBotOutbox(knex: Knex, botUserId: string) {
  const mine = () => knex("bot_outbox").where({ bot_user_id: botUserId });
  return {
    async queue(userId: string, text: string, now = Date.now()): Promise<void> {
      await knex("bot_outbox").insert({ bot_user_id: botUserId, user_id: userId, text, created_at: now });
    },
    /** The users with notices waiting. */
    async users(): Promise<string[]> {
      const rows: { user_id: string }[] = await mine().distinct("user_id");
      return rows.map((r) => r.user_id);
    },
    async waiting(userId: string): Promise<OutboxEntry[]> {
      const rows: { seq: string | number; user_id: string; text: string }[] = await mine()
        .where({ user_id: userId })
        .orderBy("seq")
        .select("seq", "user_id", "text");
      return rows.map((r) => ({ ...r, seq: Number(r.seq) }));
    },
    async sent(seq: number): Promise<void> {
      await mine().where({ seq }).delete();
    },
    /** Notices older than `before` (ms) are given up: the user never joined, or cannot be invited. */
    async prune(before: number): Promise<number> {
      // The rows, not the count: the embedded driver answers a delete with a result object.
      const gone: unknown[] = await mine().where("created_at", "<", before).delete().returning("seq");
      return gone.length;
    },
  };
}
export type BotOutbox = ReturnType<typeof createBotOutbox>;

/** The rooms each bot is in (`bot_rooms`), kept from the transactions' membership events and the bot's own view. */
export function botRooms(knex: Knex) {
  return {
    async joined(botUserId: string, roomId: string): Promise<void> {
      await knex("bot_rooms").insert({ bot_user_id: botUserId, room_id: roomId }).onConflict().ignore();
    },
    async left(botUserId: string, roomId: string): Promise<void> {
      await knex("bot_rooms").where({ bot_user_id: botUserId, room_id: roomId }).delete();
    },
    /** The bot's rooms as its client sees them now (at its start): the table follows. */
    async replace(botUserId: string, roomIds: readonly string[]): Promise<void> {
      await knex.transaction(async (trx) => {
        await trx("bot_rooms").where({ bot_user_id: botUserId }).whereNotIn("room_id", roomIds).delete();
        for (let i = 0; i < roomIds.length; i += 500)
          await trx("bot_rooms")
            .insert(roomIds.slice(i, i + 500).map((room_id) => ({ bot_user_id: botUserId, room_id })))
            .onConflict()
            .ignore();
      });
    },
    /** The bots in each of these rooms. */
    async botsIn(roomIds: readonly string[]): Promise<Map<string, string[]>> {
      const out = new Map<string, string[]>();
      if (roomIds.length === 0) return out;
      const rows: { bot_user_id: string; room_id: string }[] = await knex("bot_rooms")
        .whereIn("room_id", [...new Set(roomIds)])
        .select("bot_user_id", "room_id");
      for (const r of rows) out.set(r.room_id, [...(out.get(r.room_id) ?? []), r.bot_user_id]);
      return out;
    },
  };
}
export type BotRooms = ReturnType<typeof botRooms>;
