import type { Migration } from "@medmesh/common";

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
];
