import type { Knex } from "knex";
import { affected, deleteInBatches, type Db } from "./db.ts";

/**
 * The interop API's records: one per (vendor, Idempotency-Key) with the request's hash and its
 * answer (`interop_requests`, kept for the retry window), and the signature nonces seen within
 * the clock-skew window (`interop_nonces`, until they expire).
 */
export function interopRequests(knex: Knex) {
  return {
    /** The earlier request under this key, locked for the transaction that answers the retry. */
    earlier: (
      db: Db,
      vendor: string,
      key: string,
    ): Promise<{ request_hash: string; status: number; response: unknown } | undefined> =>
      db("interop_requests")
        .where({ vendor, idempotency_key: key })
        .forUpdate()
        .first<{ request_hash: string; status: number; response: unknown } | undefined>(
          "request_hash",
          "status",
          "response",
        ),
    async remember(
      db: Db,
      r: { vendor: string; key: string; hash: string; status: number; response: unknown },
    ): Promise<void> {
      await db("interop_requests").insert({
        vendor: r.vendor,
        idempotency_key: r.key,
        request_hash: r.hash,
        status: r.status,
        response: r.response,
        received_at: new Date(),
      });
    },
    /** The Idempotency-Key of the request that queued inbound event `seq` (if still remembered). */
    async keyOfEvent(vendor: string, seq: number): Promise<string | undefined> {
      const row = await knex("interop_requests")
        .where({ vendor })
        .whereRaw("(response->>'event_seq')::bigint = ?", [seq])
        .first<{ idempotency_key: string } | undefined>("idempotency_key");
      return row?.idempotency_key;
    },
    /** False when the vendor used this nonce before (a replay). */
    async useNonce(vendor: string, nonce: string, expiresAt: Date): Promise<boolean> {
      const inserted = await knex("interop_nonces")
        .insert({ vendor, nonce, expires_at: expiresAt })
        .onConflict(["vendor", "nonce"])
        .ignore()
        .returning("nonce");
      return inserted.length > 0;
    },
    pruneRequests: (before: Date, batch: number): Promise<number> =>
      deleteInBatches(knex, "interop_requests", (q) => q.where("received_at", "<", before), batch),
    pruneNonces: async (now: Date): Promise<number> =>
      affected(await knex("interop_nonces").where("expires_at", "<", now).delete()),
  };
}
export type InteropRequests = ReturnType<typeof interopRequests>;
