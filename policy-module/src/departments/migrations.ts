import type { Migration } from "@medmesh/common";

/** The departments capability's tables: the functional accounts and their conversations' desks. */
export const DEPARTMENTS_MIGRATIONS: readonly Migration[] = [
  {
    version: 26,
    capability: "departments",
    name: "department accounts",
    up: async (trx) => {
      await trx.schema.createTable("departments", (t) => {
        t.text("id").primary();
        t.text("user_id").notNullable().unique();
        t.text("name").notNullable();
        // JSON arrays: the members (user IDs) and the rota (shifts), as checked by checkDepartment.
        t.text("members").notNullable();
        t.text("rota").notNullable();
        t.boolean("show_responder").notNullable();
        t.timestamp("updated_at", { useTz: true }).notNullable();
      });
    },
  },
  {
    version: 27,
    capability: "departments",
    name: "department desks",
    up: async (trx) => {
      // One private desk room per outside conversation, with the members on duty.
      await trx.schema.createTable("department_desks", (t) => {
        t.text("room_id").primary(); // the outside conversation
        t.text("department_id").notNullable().references("id").inTable("departments").onDelete("CASCADE");
        t.text("desk_room_id").notNullable().unique();
        t.timestamp("created_at", { useTz: true }).notNullable();
      });
    },
  },
  {
    version: 37,
    capability: "departments",
    name: "retired departments",
    up: async (trx) => {
      // A department ended (DELETE) stays in the table: its audit names the account and its desks.
      // retired_at: nothing is relayed from then on; closed_at: its rooms left, its account deactivated.
      await trx.schema.alterTable("departments", (t) => {
        t.timestamp("retired_at", { useTz: true }).nullable();
        t.timestamp("closed_at", { useTz: true }).nullable();
      });
    },
  },
];
