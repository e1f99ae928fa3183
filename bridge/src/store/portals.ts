import type { Knex } from "knex";
import type { Db } from "./db.ts";

/** A conversation with its Matrix room. */
export interface Portal {
  vendor: string;
  conversation_id: string;
  room_id: string;
}

/**
 * Conversations (`interop_conversations`: who owns them, their portal room) and the ghosts in
 * each portal (`bridge_members`: the devices a vendor message's room key is shared with).
 */
export function portalStore(knex: Knex) {
  return {
    byRoom: (roomId: string): Promise<Portal | undefined> =>
      knex("interop_conversations")
        .where({ room_id: roomId })
        .first<Portal | undefined>("vendor", "conversation_id", "room_id"),
    conversation: (
      vendor: string,
      conversationId: string,
    ): Promise<{ room_id: string | null; kind: string } | undefined> =>
      knex("interop_conversations")
        .where({ vendor, conversation_id: conversationId })
        .first<{ room_id: string | null; kind: string } | undefined>("room_id", "kind"),
    /** The vendor owning a conversation ID, whichever vendor asks. */
    async ownerOf(db: Db, conversationId: string): Promise<string | undefined> {
      const row = await db("interop_conversations")
        .where({ conversation_id: conversationId })
        .first<{ vendor: string } | undefined>("vendor");
      return row?.vendor;
    },
    /** A vendor's new conversation (its room follows once the core created it). */
    async create(db: Db, c: { vendor: string; conversation_id: string; kind: string }): Promise<void> {
      await db("interop_conversations").insert({ ...c, created_at: new Date() });
    },
    /** A Matrix room becoming a portal (its room ID is the conversation ID); a repeat adds nothing. */
    async adoptRoom(db: Db, c: { vendor: string; room_id: string; kind: string }): Promise<void> {
      await db("interop_conversations")
        .insert({
          vendor: c.vendor,
          conversation_id: c.room_id,
          kind: c.kind,
          room_id: c.room_id,
          created_at: new Date(),
        })
        .onConflict(["vendor", "conversation_id"])
        .ignore();
    },
    async setRoom(
      db: Db,
      vendor: string,
      conversationId: string,
      roomId: string,
      name?: string,
    ): Promise<void> {
      await db("interop_conversations")
        .where({ vendor, conversation_id: conversationId })
        .update({ room_id: roomId, ...(name ? { name } : {}) });
    },

    ghostsIn: (roomId: string): Promise<string[]> =>
      knex("bridge_members").where({ room_id: roomId }).pluck<string[]>("user_id"),
    /** The ghost that acts for the portal (invites): the first by ID, so always the same one. */
    async firstGhost(roomId: string): Promise<string | undefined> {
      const row = await knex("bridge_members")
        .where({ room_id: roomId })
        .orderBy("user_id")
        .first<{ user_id: string } | undefined>("user_id");
      return row?.user_id;
    },
    async isMember(roomId: string, userId: string): Promise<boolean> {
      return (
        (await knex("bridge_members").where({ room_id: roomId, user_id: userId }).first("user_id")) !==
        undefined
      );
    },
    async addMember(roomId: string, userId: string, db: Db = knex): Promise<void> {
      await db("bridge_members").insert({ room_id: roomId, user_id: userId }).onConflict().ignore();
    },
    async removeMember(db: Db, roomId: string, userId: string): Promise<void> {
      await db("bridge_members").where({ room_id: roomId, user_id: userId }).delete();
    },
    roomsOf: (userId: string): Promise<string[]> =>
      knex("bridge_members").where({ user_id: userId }).pluck<string[]>("room_id"),
  };
}
export type PortalStore = ReturnType<typeof portalStore>;
