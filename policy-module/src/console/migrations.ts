import type { Migration } from "@medmesh/common";

/** The admin console's tables: its sessions, the roles granted in it, and indexes its pages read by. */
export const CONSOLE_MIGRATIONS: readonly Migration[] = [
  {
    version: 21,
    capability: "console",
    name: "console sessions",
    up: (trx) =>
      trx.schema.createTable("console_sessions", (t) => {
        // SHA-256 of the cookie's value: a copy of the table does not sign anyone in.
        t.text("id_hash").primary();
        t.text("user_id").notNullable();
        t.text("csrf_token").notNullable();
        t.timestamp("created_at", { useTz: true }).notNullable();
        t.timestamp("expires_at", { useTz: true }).notNullable();
        t.index(["user_id"]);
        t.index(["expires_at"]);
      }),
  },
  {
    version: 22,
    capability: "console",
    name: "console roles",
    up: (trx) =>
      trx.schema.createTable("console_roles", (t) => {
        t.text("user_id").primary();
        t.text("role").notNullable(); // org_admin | reviewer | auditor
        t.text("granted_by").notNullable();
        t.timestamp("granted_at", { useTz: true }).notNullable();
      }),
  },
  {
    version: 23,
    capability: "console",
    name: "audit log indexes for the console's filters",
    // The audit page filters by actor, action, object and time, newest first, in pages by seq.
    up: async (trx) => {
      await trx.schema.alterTable("audit_log", (t) => {
        t.index(["actor", "seq"], "audit_log_actor_seq");
        t.index(["object", "seq"], "audit_log_object_seq");
        t.index(["action", "seq"], "audit_log_action_seq");
        t.index(["at"], "audit_log_at");
      });
    },
  },
];
