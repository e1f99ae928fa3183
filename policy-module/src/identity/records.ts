import type { Knex } from "knex";

export type VerificationStatus = "pending" | "verified" | "rejected" | "revoked";

export interface VerificationRecord {
  user_id: string;
  registry: string;
  /** Needed for re-verification; never logged, never leaves this store. */
  registration_number: string;
  claimed_name: string;
  registered_name: string | null;
  profession: string | null;
  specialisms: string[];
  status: VerificationStatus;
  reason: string | null;
  verified_at: Date | null;
  expires_at: Date | null;
  last_checked_at: Date | null;
  attempts: number;
  updated_at: Date;
}

/** The clinician_verifications table (common store migration 4). */
export function verificationRecords(knex: Knex) {
  const table = () => knex<VerificationRecord>("clinician_verifications");
  const fromRow = (r: VerificationRecord): VerificationRecord => ({
    ...r,
    specialisms: typeof r.specialisms === "string" ? (JSON.parse(r.specialisms) as string[]) : r.specialisms,
  });
  return {
    async get(userId: string): Promise<VerificationRecord | undefined> {
      const row: VerificationRecord | undefined = await table().where({ user_id: userId }).first();
      return row && fromRow(row);
    },
    async put(record: VerificationRecord): Promise<void> {
      await table()
        .insert({ ...record, specialisms: JSON.stringify(record.specialisms) as never })
        .onConflict("user_id")
        .merge();
    },
    async verified(now: Date): Promise<VerificationRecord[]> {
      const rows: VerificationRecord[] = await table()
        .where({ status: "verified" })
        .andWhere("expires_at", ">", now);
      return rows.map(fromRow);
    },
    /** Records due for a check (verified, or pending a retry), least recently checked first. */
    async due(before: Date, limit: number, afterUserId = ""): Promise<VerificationRecord[]> {
      const rows = await table()
        .whereIn("status", ["verified", "pending"])
        .andWhere((q) => {
          void q.whereNull("last_checked_at").orWhere("last_checked_at", "<", before);
        })
        .andWhere("user_id", ">", afterUserId)
        .orderBy("user_id")
        .limit(limit);
      return rows.map(fromRow);
    },
  };
}
export type VerificationRecords = ReturnType<typeof verificationRecords>;
