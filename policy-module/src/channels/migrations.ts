import type { Migration } from "@medmesh/common";

/** The channels capability's tables: the organisation's broadcast channels and their posts. */
export const CHANNELS_MIGRATIONS: readonly Migration[] = [
  {
    version: 24,
    capability: "channels",
    name: "broadcast channels",
    up: async (trx) => {
      await trx.schema.createTable("channels", (t) => {
        t.text("room_id").primary();
        t.text("name").notNullable();
        t.text("scope").notNullable();
        // JSON arrays: target organisations (network scope; empty: every trusted one), professions
        // (empty: every verified clinician), publishers (never empty).
        t.text("organisations").notNullable();
        t.text("professions").notNullable();
        t.text("publishers").notNullable();
        t.boolean("mandatory").notNullable();
        t.text("created_by").notNullable();
        t.timestamp("created_at", { useTz: true }).notNullable();
        t.timestamp("reconciled_at", { useTz: true });
      });
    },
  },
  {
    version: 25,
    capability: "channels",
    name: "channel posts",
    up: async (trx) => {
      // Which posts are urgent (their read and acknowledged counts are asked for); no content.
      await trx.schema.createTable("channel_posts", (t) => {
        t.text("event_id").primary();
        t.text("room_id").notNullable().index();
        t.text("sender").notNullable();
        t.boolean("urgent").notNullable();
        t.timestamp("sent_at", { useTz: true }).notNullable();
      });
    },
  },
];
