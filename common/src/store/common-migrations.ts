import { APPSERVICE_FRAME_MIGRATIONS } from "../appservice/schema.ts";
import type { Migration } from "./migrations.ts";

/**
 * The tables of the store itself (leases, the appservice transaction journal, documents) and of
 * the audit log: every service has them. Capabilities add their own (migrations.ts on numbering).
 */
export const COMMON_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    capability: "common",
    name: "leases",
    up: (trx) =>
      trx.schema.createTable("leases", (t) => {
        t.text("name").primary();
        t.text("holder").notNullable();
        t.timestamp("expires_at", { useTz: true }).notNullable();
      }),
  },
  {
    version: 2,
    capability: "common",
    name: "appservice transactions",
    up: (trx) =>
      trx.schema.createTable("appservice_transactions", (t) => {
        t.text("service").notNullable();
        t.text("txn_id").notNullable();
        t.timestamp("processed_at", { useTz: true }).notNullable();
        t.primary(["service", "txn_id"]);
      }),
  },
  {
    version: 3,
    capability: "common",
    name: "documents",
    up: (trx) =>
      trx.schema.createTable("documents", (t) => {
        t.text("name").primary();
        t.text("value").notNullable();
        t.timestamp("updated_at", { useTz: true }).notNullable();
      }),
  },
  {
    version: 5,
    capability: "common",
    name: "audit log",
    up: (trx) =>
      trx.schema.createTable("audit_log", (t) => {
        t.bigIncrements("seq").primary();
        t.timestamp("at", { useTz: true }).notNullable();
        t.text("actor").notNullable();
        t.text("on_behalf_of");
        t.text("action").notNullable();
        t.text("object").notNullable();
        t.text("outcome").notNullable();
        t.jsonb("details").notNullable().defaultTo("{}");
        // Hash chain: each entry's hash covers the previous one, so an edited or deleted entry shows.
        t.text("prev_hash").notNullable();
        t.text("hash").notNullable();
      }),
  },
  ...APPSERVICE_FRAME_MIGRATIONS,
];
