import type { Knex } from "knex";

export type VerificationStatus =
  "pending" | "awaiting_document" | "in_review" | "verified" | "rejected" | "revoked";

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
  /**
   * The organisation's identity provider (Synapse's idp_id) that proved who this person is: the
   * account came from its single sign-on. Null for a self-registered account.
   */
  identity_provider: string | null;
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
    async withStatus(status: VerificationStatus): Promise<VerificationRecord[]> {
      const rows: VerificationRecord[] = await table().where({ status }).orderBy("updated_at");
      return rows.map(fromRow);
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

export interface IdentityDocument {
  user_id: string;
  content_type: string;
  data: Buffer;
  uploaded_at: Date;
}

/** ID documents awaiting the organisation admin's review (deleted once decided). */
export function identityDocuments(knex: Knex) {
  const table = () => knex<IdentityDocument>("identity_documents");
  return {
    async put(doc: IdentityDocument): Promise<void> {
      await table().insert(doc).onConflict("user_id").merge();
    },
    async get(userId: string): Promise<IdentityDocument | undefined> {
      const row = await table().where({ user_id: userId }).first();
      // PGlite returns bytea as a Uint8Array, node-postgres as a Buffer.
      return row && { ...row, data: Buffer.from(row.data) };
    },
    async delete(userId: string): Promise<void> {
      await table().where({ user_id: userId }).delete();
    },
  };
}
export type IdentityDocuments = ReturnType<typeof identityDocuments>;
