import type { Migration } from "@medmesh/common";

/** The groups capability's table: the rooms of this organisation listed in the group directory. */
export const GROUPS_MIGRATIONS: readonly Migration[] = [
  {
    version: 18,
    capability: "groups",
    name: "group directory",
    up: async (trx) => {
      // The room's current state as Synapse holds it, re-read whenever one of these events changes.
      await trx.schema.createTable("groups_listed", (t) => {
        t.text("room_id").primary();
        t.boolean("listed").notNullable();
        t.text("scope").notNullable();
        // JSON array; empty: every verified clinician.
        t.text("professions").notNullable();
        t.text("name");
        t.text("topic");
        t.text("description");
        t.text("join_rule");
        t.integer("members").notNullable().defaultTo(0);
        t.timestamp("updated_at", { useTz: true }).notNullable();
      });
    },
  },
];
