import type { Migration } from "../store/migrations.ts";

/**
 * The appservice frame's own tables (catch-up and dead letters), in the one global migration
 * history: part of common's steps (store/common-migrations.ts), which every service runs.
 */
export const APPSERVICE_FRAME_MIGRATIONS: readonly Migration[] = [
  {
    version: 16,
    capability: "common",
    name: "appservice frame: catch-up on held-back transactions",
    up: async (trx) => {
      // Per service and room, the newest event handed to the service: where a catch-up reads back to.
      await trx.schema.createTable("appservice_room_positions", (t) => {
        t.text("service").notNullable();
        t.text("room_id").notNullable();
        t.text("event_id").notNullable();
        t.bigInteger("origin_ts").notNullable();
        t.timestamp("updated_at", { useTz: true }).notNullable();
        t.primary(["service", "room_id"]);
      });
      // Events a catch-up handed over: their copy in the held-back transaction, when it comes, is
      // dropped (an old state event must not undo a newer one).
      await trx.schema.createTable("appservice_caught_up", (t) => {
        t.text("service").notNullable();
        t.text("event_id").notNullable();
        t.text("room_id").notNullable();
        t.timestamp("caught_up_at", { useTz: true }).notNullable();
        t.primary(["service", "event_id"]);
      });
    },
  },
  {
    version: 17,
    capability: "common",
    name: "appservice frame: dead letters",
    // Events a service could not act on, ever: metadata only, never content (a retry fetches the
    // event from the homeserver again).
    up: (trx) =>
      trx.schema.createTable("appservice_dead_letters", (t) => {
        t.text("service").notNullable();
        t.text("event_id").notNullable();
        t.text("room_id").notNullable();
        t.text("type").notNullable();
        t.text("sender").notNullable();
        t.text("state_key"); // a membership's subject (e.g. the ghost that could not join)
        t.text("error").notNullable();
        t.integer("attempts").notNullable().defaultTo(1);
        t.timestamp("first_failed_at", { useTz: true }).notNullable();
        t.timestamp("last_failed_at", { useTz: true }).notNullable();
        t.primary(["service", "event_id"]);
      }),
  },
];
