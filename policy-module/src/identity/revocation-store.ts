import type { Knex } from "knex";

export interface OutboxRow {
  jti: string;
  peer: string;
  user_id: string;
  notice: string;
  attempts: number;
  next_attempt_at: Date;
  created_at: Date;
  delivered_at: Date | null;
  given_up_at: Date | null;
  last_error: string | null;
}

/** The tables of migration 20: the notices' outbox, the notices received, the remote badges shown. */
export function revocationTables(knex: Knex) {
  const outbox = () => knex<OutboxRow>("revocation_outbox");
  return {
    async enqueue(rows: readonly Omit<OutboxRow, "delivered_at" | "given_up_at" | "last_error">[]) {
      if (rows.length) await outbox().insert(rows).onConflict(["jti", "peer"]).ignore();
    },
    /**
     * Takes up to `limit` due rows for this instance: their next attempt is pushed out by `leaseMs`
     * in the same statement, so replicas delivering at once do not take the same row (and a row
     * taken by an instance that died is due again after the lease).
     */
    async claimDue(now: Date, limit: number, leaseMs: number): Promise<OutboxRow[]> {
      const res = await knex.raw<{ rows: OutboxRow[] }>(
        `UPDATE revocation_outbox SET next_attempt_at = ?
         WHERE (jti, peer) IN (
           SELECT jti, peer FROM revocation_outbox
           WHERE delivered_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= ?
           ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED)
         RETURNING *`,
        [new Date(now.getTime() + leaseMs), now, limit],
      );
      return res.rows;
    },
    async delivered(jti: string, peer: string, now: Date): Promise<void> {
      await outbox().where({ jti, peer }).update({ delivered_at: now, last_error: null });
    },
    async failed(
      jti: string,
      peer: string,
      attempts: number,
      next: Date | undefined,
      error: string,
      now: Date,
    ): Promise<void> {
      await outbox()
        .where({ jti, peer })
        .update({
          attempts,
          last_error: error.slice(0, 500),
          ...(next ? { next_attempt_at: next } : { given_up_at: now }),
        });
    },
    async pending(): Promise<number> {
      const [row] = await outbox()
        .whereNull("delivered_at")
        .whereNull("given_up_at")
        .count<{ n: string }[]>({ n: "*" });
      return Number(row?.n ?? 0);
    },
    async nextDue(): Promise<Date | undefined> {
      const row = await outbox()
        .whereNull("delivered_at")
        .whereNull("given_up_at")
        .min<{ at: Date | null }>({ at: "next_attempt_at" })
        .first();
      return row?.at ? new Date(row.at) : undefined;
    },

    /** True when the notice is new here (false: applied before, nothing to do). */
    async received(r: {
      jti: string;
      issuer: string;
      user_id: string;
      revoked_at: Date;
      received_at: Date;
    }): Promise<boolean> {
      const rows = await knex("received_revocations").insert(r).onConflict("jti").ignore().returning("jti");
      return rows.length === 1;
    },
    /** The latest revocation another organisation sent about its user. */
    async revokedAt(userId: string): Promise<Date | undefined> {
      const row = await knex("received_revocations")
        .where({ user_id: userId })
        .max<{ at: Date | null }>({ at: "revoked_at" })
        .first();
      return row?.at ? new Date(row.at) : undefined;
    },

    async showBadge(userId: string, verified: boolean, expiresAt: Date | null, nextCheck: Date) {
      await knex("remote_badges")
        .insert({ user_id: userId, verified, expires_at: expiresAt, next_check_at: nextCheck })
        .onConflict("user_id")
        .merge();
    },
    async badgesDue(now: Date, limit: number): Promise<string[]> {
      return (await knex("remote_badges")
        .where("next_check_at", "<=", now)
        .orderBy("next_check_at")
        .limit(limit)
        .pluck("user_id")) as string[];
    },
    async badge(userId: string): Promise<{ verified: boolean; expires_at: Date | null } | undefined> {
      const row = await knex("remote_badges")
        .where({ user_id: userId })
        .first<{ verified: boolean; expires_at: Date | null } | undefined>("verified", "expires_at");
      return row && { verified: row.verified, expires_at: row.expires_at ? new Date(row.expires_at) : null };
    },
  };
}
export type RevocationTables = ReturnType<typeof revocationTables>;
