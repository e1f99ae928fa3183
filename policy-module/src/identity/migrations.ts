import { randomBytes } from "node:crypto";
import type { Migration } from "@medmesh/common";
import { BINDING_STATUSES, numberHash } from "./number-binding.ts";

/** The identity capability's tables: clinicians' verifications and the ID documents awaiting a decision. */
export const IDENTITY_MIGRATIONS: readonly Migration[] = [
  {
    version: 4,
    capability: "identity",
    name: "clinician verifications",
    up: (trx) =>
      trx.schema.createTable("clinician_verifications", (t) => {
        t.text("user_id").primary();
        t.text("registry").notNullable();
        // Kept so that re-verification works; never logged, never in attestations or audit.
        t.text("registration_number").notNullable();
        t.text("claimed_name").notNullable();
        t.text("registered_name");
        t.text("profession");
        t.jsonb("specialisms").notNullable().defaultTo("[]");
        t.text("status").notNullable(); // pending | verified | rejected | revoked
        t.text("reason");
        t.timestamp("verified_at", { useTz: true });
        t.timestamp("expires_at", { useTz: true });
        t.timestamp("last_checked_at", { useTz: true });
        t.integer("attempts").notNullable().defaultTo(0);
        t.timestamp("updated_at", { useTz: true }).notNullable();
        t.index(["status", "last_checked_at"]);
      }),
  },
  {
    version: 6,
    capability: "identity",
    name: "identity documents",
    up: (trx) =>
      trx.schema.createTable("identity_documents", (t) => {
        // One document per user, held only until the admin decides (then deleted).
        t.text("user_id").primary();
        t.text("content_type").notNullable();
        t.binary("data").notNullable();
        t.timestamp("uploaded_at", { useTz: true }).notNullable();
      }),
  },
  {
    version: 15,
    capability: "identity",
    name: "single sign-on identities; verifications proven by the organisation",
    up: async (trx) => {
      // What the organisation's identity provider asserted about a subject (its own ID for the
      // person), and which Matrix account Synapse created or found for it (its external_ids).
      await trx.schema.createTable("sso_identities", (t) => {
        t.text("idp_id").notNullable();
        t.text("subject").notNullable();
        t.text("user_id");
        // From the configured claim; never logged, never in attestations or audit.
        t.text("registration_number");
        t.text("name");
        t.timestamp("claims_at", { useTz: true }).notNullable();
        t.timestamp("linked_at", { useTz: true });
        t.primary(["idp_id", "subject"]);
        t.index(["user_id"]);
      });
      // The identity provider that proved who the clinician is (null: self-registered).
      await trx.schema.alterTable("clinician_verifications", (t) => {
        t.text("identity_provider");
      });
    },
  },
  {
    version: 30,
    capability: "identity",
    name: "one registration number per account: keyed number hash, unique",
    up: async (trx) => {
      // The key of the number hash, made once (the migration runs once, under the store's lock).
      await trx.schema.createTable("identity_number_key", (t) => {
        t.integer("id").primary();
        t.binary("key").notNullable();
      });
      const key = randomBytes(32);
      await trx("identity_number_key").insert({ id: 1, key });
      await trx.schema.alterTable("clinician_verifications", (t) => {
        // HMAC of registry and number, set while the record binds the number (docs/identity.md).
        t.text("number_hash");
        // The other account that held the number when this one claimed it (sent to review).
        t.text("conflict_with");
      });
      // Records that bind today, oldest verification first: the first holds the number; a later
      // duplicate keeps its status, marked with the holder, and will not bind until it is reviewed.
      const rows: { user_id: string; registry: string; registration_number: string }[] = await trx(
        "clinician_verifications",
      )
        .whereIn("status", [...BINDING_STATUSES])
        .orderByRaw("verified_at asc nulls last, updated_at asc, user_id asc")
        .select("user_id", "registry", "registration_number");
      const holders = new Map<string, string>();
      for (const r of rows) {
        const hash = numberHash(key, r.registry, r.registration_number);
        const holder = holders.get(hash);
        if (holder === undefined) holders.set(hash, r.user_id);
        await trx("clinician_verifications")
          .where({ user_id: r.user_id })
          .update(holder === undefined ? { number_hash: hash } : { conflict_with: holder });
      }
      await trx.schema.alterTable("clinician_verifications", (t) => {
        t.unique(["number_hash"], { indexName: "clinician_verifications_number_hash_unique" });
      });
    },
  },
];
