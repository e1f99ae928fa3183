import type { Knex } from "knex";
import type { Migration } from "@medmesh/common";

/**
 * The E2EE bots' tables (verification bot, channel bot, department accounts): what the appservice
 * transactions brought each bot (`bot_inbox`), the rooms each is in (`bot_rooms`, so any replica
 * can tell which events are a bot's without its client), and what a bot must tell a user
 * (`bot_outbox`). Rows, not one document per bot: replicas receive transactions concurrently.
 */
export const BOT_MIGRATIONS: readonly Migration[] = [
  {
    version: 38,
    capability: "bot",
    name: "bot inbox, rooms and outbox as tables (were documents)",
    up: async (trx) => {
      await trx.schema.createTable("bot_inbox", (t) => {
        t.bigIncrements("seq"); // arrival order
        t.text("bot_user_id").notNullable();
        t.text("event_id").notNullable();
        t.text("room_id").notNullable();
        t.text("event").notNullable(); // the event as Synapse pushed it (JSON; encrypted where the room is)
        t.bigInteger("received_at").notNullable(); // ms
        // Kept after handling (for a while) so a resent transaction is not handled again.
        t.bigInteger("handled_at");
        t.unique(["bot_user_id", "event_id"]);
        t.index(["bot_user_id", "handled_at", "seq"]);
      });
      await trx.schema.createTable("bot_rooms", (t) => {
        t.text("bot_user_id").notNullable();
        t.text("room_id").notNullable();
        t.primary(["bot_user_id", "room_id"]);
        t.index(["room_id"]);
      });
      await trx.schema.createTable("bot_outbox", (t) => {
        t.bigIncrements("seq");
        t.text("bot_user_id").notNullable();
        t.text("user_id").notNullable();
        t.text("text").notNullable();
        t.bigInteger("created_at").notNullable();
        t.index(["bot_user_id", "user_id", "seq"]);
      });
      await moveDocuments(trx);
    },
  },
];

interface Journal {
  pending?: { event: { event_id: string; room_id: string }; received_at: number }[];
  handled?: string[];
}

/** The documents of earlier versions (`bot.inbox:<bot>`, `bot.pending:<user>`) move into the tables. */
async function moveDocuments(trx: Knex.Transaction): Promise<void> {
  const now = Date.now();
  const inboxes: { name: string; value: string }[] = await trx("documents")
    .where("name", "like", "bot.inbox:%")
    .select("name", "value");
  for (const doc of inboxes) {
    const bot = doc.name.slice("bot.inbox:".length);
    const j = JSON.parse(doc.value) as Journal;
    const rows = [
      ...(j.handled ?? []).map((id) => ({
        bot_user_id: bot,
        event_id: id,
        room_id: "",
        event: "{}",
        received_at: now,
        handled_at: now,
      })),
      ...(j.pending ?? []).map((p) => ({
        bot_user_id: bot,
        event_id: p.event.event_id,
        room_id: p.event.room_id,
        event: JSON.stringify(p.event),
        received_at: p.received_at,
        handled_at: null,
      })),
    ];
    for (let i = 0; i < rows.length; i += 500)
      await trx("bot_inbox")
        .insert(rows.slice(i, i + 500))
        .onConflict(["bot_user_id", "event_id"])
        .ignore();
  }
  // Notices waiting for a user to join were the verification bot's (the only bot that told users).
  const verifyBot: { name: string } | undefined = await trx("documents")
    .where("name", "like", "bot.device:@medmesh-verify:%")
    .first("name");
  const pending: { name: string; value: string }[] = await trx("documents")
    .where("name", "like", "bot.pending:%")
    .select("name", "value");
  for (const doc of pending) {
    const texts = JSON.parse(doc.value) as string[];
    if (!verifyBot || texts.length === 0) continue;
    await trx("bot_outbox").insert(
      texts.map((text) => ({
        bot_user_id: verifyBot.name.slice("bot.device:".length),
        user_id: doc.name.slice("bot.pending:".length),
        text,
        created_at: now,
      })),
    );
  }
  await trx("documents")
    .where("name", "like", "bot.inbox:%")
    .orWhere("name", "like", "bot.pending:%")
    .delete();
}
