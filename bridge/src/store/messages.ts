import type { Knex } from "knex";
import { affected, type Db } from "./db.ts";

/**
 * Message IDs on both sides (`bridge_messages`): a vendor message's Matrix event, for the replies,
 * edits, deletions, reactions and receipts that refer to it, until the message expires. A Matrix
 * user's message needs no row: the vendor knows it by its event ID.
 */
export function messageMap(knex: Knex) {
  return {
    /** The vendor's ID for a Matrix event of the conversation, if the event is one of its messages. */
    async messageIdOf(conversationId: string, eventId: string): Promise<string | undefined> {
      const row = await knex("bridge_messages")
        .where({ conversation_id: conversationId, event_id: eventId })
        .first<{ message_id: string } | undefined>("message_id");
      return row?.message_id;
    },
    async eventOf(conversationId: string, messageId: string): Promise<string | undefined> {
      const row = await knex("bridge_messages")
        .where({ conversation_id: conversationId, message_id: messageId })
        .first<{ event_id: string } | undefined>("event_id");
      return row?.event_id;
    },
    async record(
      db: Db,
      m: { conversation_id: string; message_id: string; room_id: string; event_id: string },
    ): Promise<void> {
      await db("bridge_messages").insert(m).onConflict(["conversation_id", "message_id"]).merge();
    },
    /** The message expired: nothing may refer to it any more. */
    forgetEvent: async (eventId: string): Promise<number> =>
      affected(await knex("bridge_messages").where({ event_id: eventId }).delete()),
  };
}
export type MessageMap = ReturnType<typeof messageMap>;
