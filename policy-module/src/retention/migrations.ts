import type { Migration } from "@medmesh/common";

/** The retention capability's tables: its index of message metadata, keeps and room policies. */
export const RETENTION_MIGRATIONS: readonly Migration[] = [
  {
    version: 7,
    capability: "retention",
    name: "retention index",
    up: async (trx) => {
      // Metadata of message-like events, never content: what the retention sweep needs.
      await trx.schema.createTable("retention_events", (t) => {
        t.text("event_id").primary();
        t.text("room_id").notNullable();
        t.text("sender").notNullable();
        t.text("type").notNullable();
        t.bigInteger("origin_ts").notNullable();
        t.specificType("media", "text[]").notNullable().defaultTo("{}");
        // Journal: set before the redaction is sent, so a crashed sweep knows what may be in flight.
        t.timestamp("redacting_at", { useTz: true });
        t.timestamp("redacted_at", { useTz: true });
      });
      // The sweep's question ("what expired and is not yet redacted?") reads only this index.
      await trx.raw(
        "CREATE INDEX retention_events_due ON retention_events (origin_ts) WHERE redacted_at IS NULL",
      );
      await trx.raw("CREATE INDEX retention_events_room ON retention_events (room_id, origin_ts)");
      await trx.schema.createTable("retention_keeps", (t) => {
        t.text("event_id").notNullable();
        t.text("room_id").notNullable();
        t.text("kept_by").notNullable();
        t.timestamp("kept_at", { useTz: true }).notNullable();
        t.primary(["room_id", "event_id"]);
      });
      await trx.schema.createTable("retention_rooms", (t) => {
        t.text("room_id").primary();
        // The room's own period where its admins chose a shorter one; null: the organisation's.
        t.bigInteger("period_ms");
        // Rooms that existed before MedMesh: indexed once through the admin API.
        t.timestamp("backfilled_at", { useTz: true });
      });
    },
  },
  {
    version: 13,
    capability: "retention",
    name: "retention: media that room state refers to; rooms homed elsewhere",
    up: async (trx) => {
      // Avatars and other media named in room state (m.room.member avatar_url, m.room.avatar, …):
      // never retention's to delete, even when an expired message refers to the same file.
      await trx.schema.createTable("retention_state_media", (t) => {
        t.text("mxc").primary();
        t.text("room_id").notNullable();
        t.text("type").notNullable();
        t.timestamp("seen_at", { useTz: true }).notNullable();
      });
      // Rooms another organisation's MedMesh administers: this one only forgets its own copy,
      // reading their history through the admin API from where it last stopped.
      await trx.schema.alterTable("retention_rooms", (t) => {
        t.timestamp("foreign_since", { useTz: true });
        t.text("foreign_from");
      });
    },
  },
  {
    version: 35,
    capability: "retention",
    name: "retention: the sweeps that ran, for the console",
    // Counts and durations only, kept a year (a sweep a day); the console charts the durations.
    up: (trx) =>
      trx.schema.createTable("retention_sweeps", (t) => {
        t.bigIncrements("id");
        t.timestamp("started_at", { useTz: true }).notNullable().index();
        t.double("seconds").notNullable();
        for (const c of [
          "redacted",
          "forgotten",
          "failed",
          "purged_rooms",
          "media_deleted",
          "remote_media_deleted",
        ])
          t.integer(c).notNullable();
      }),
  },
];
