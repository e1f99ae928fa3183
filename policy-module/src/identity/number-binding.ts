import { createHmac } from "node:crypto";
import type { Knex } from "knex";
import type { VerificationStatus } from "./records.ts";

/*
 * One registration number, one account. A record binds its number while it is on the way to,
 * or is, a verification (these statuses) and was not sent to review over a conflict; rejected
 * and revoked records release it. The binding is the store's: a unique index on a keyed hash of
 * registry and number, so two requests at once (API and bot, two replicas) cannot both hold it.
 * The hash is keyed so that the index, a dump of it or a log line cannot be reversed by trying
 * all 10^11 numbers; the key lives in the store (identity_number_key, made by migration 30).
 */
export const BINDING_STATUSES: ReadonlySet<VerificationStatus> = new Set([
  "pending",
  "awaiting_document",
  "in_review",
  "verified",
]);

export const NUMBER_HASH_INDEX = "clinician_verifications_number_hash_unique";

export function numberHash(key: Buffer, registry: string, number: string): string {
  return createHmac("sha256", key).update(`${registry.toUpperCase()}\n${number}`).digest("hex");
}

/** The store's key, read once per process. */
export function numberKey(knex: Knex): () => Promise<Buffer> {
  let key: Promise<Buffer> | undefined;
  return () =>
    (key ??= knex("identity_number_key")
      .where({ id: 1 })
      .first<{ key: Uint8Array } | undefined>("key")
      .then((row) => {
        if (!row) throw new Error("identity_number_key is empty: the identity migrations did not run");
        // PGlite returns bytea as a Uint8Array, node-postgres as a Buffer.
        return Buffer.from(row.key);
      })
      .catch((err: unknown) => {
        key = undefined;
        throw err;
      }));
}

/** Is this the unique index of the number hash refusing a second holder? */
export function isNumberTaken(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const e = err as { code?: unknown; constraint?: unknown; message?: unknown };
  return (
    e.code === "23505" &&
    (e.constraint === NUMBER_HASH_INDEX ||
      (typeof e.message === "string" && e.message.includes(NUMBER_HASH_INDEX)))
  );
}
