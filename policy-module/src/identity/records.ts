import { ApiError } from "@medmesh/common";
import type { Knex } from "knex";
import { BINDING_STATUSES, isNumberTaken, numberHash, numberKey } from "./number-binding.ts";
import type { VerifiedClinician } from "./verification.ts";

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
  /**
   * Another account of the organisation held this record's number when it was claimed: the claim
   * went to the admin's review instead of binding the number (identity.duplicate_number: review).
   */
  conflict_with?: string;
}

export const NUMBER_IN_USE_MESSAGE =
  "This registration number is already bound to another account of this organisation. If it is yours, ask the organisation's admin";

/** The number is bound to another account: 409 ORG.MEDMESH.NUMBER_IN_USE, and nothing was stored. */
export class NumberInUseError extends ApiError {
  constructor() {
    super("ORG.MEDMESH.NUMBER_IN_USE", NUMBER_IN_USE_MESSAGE);
  }
}

/** The clinician_verifications table (common store migration 4). */
export function verificationRecords(knex: Knex) {
  type Row = Omit<VerificationRecord, "conflict_with"> & {
    conflict_with: string | null;
    number_hash: string | null;
  };
  const table = () => knex<Row>("clinician_verifications");
  const key = numberKey(knex);
  const fromRow = (row: Row): VerificationRecord => {
    const { number_hash: _hash, conflict_with, ...r } = row;
    return {
      ...r,
      specialisms:
        typeof r.specialisms === "string" ? (JSON.parse(r.specialisms) as string[]) : r.specialisms,
      ...(conflict_with === null ? {} : { conflict_with }),
    };
  };
  const hashOf = async (registry: string, number: string): Promise<string> =>
    numberHash(await key(), registry, number);
  /** The hash the record holds: set while it binds its number (number-binding.ts). */
  const bindingOf = async (r: VerificationRecord): Promise<string | null> =>
    BINDING_STATUSES.has(r.status) && r.conflict_with === undefined && r.registration_number !== ""
      ? hashOf(r.registry, r.registration_number)
      : null;
  const toRow = async (record: VerificationRecord): Promise<Row> => ({
    ...record,
    specialisms: JSON.stringify(record.specialisms) as never,
    conflict_with: record.conflict_with ?? null,
    number_hash: await bindingOf(record),
  });
  return {
    async get(userId: string): Promise<VerificationRecord | undefined> {
      const row: Row | undefined = await table().where({ user_id: userId }).first();
      return row && fromRow(row);
    },
    /** Stores a record; NumberInUseError (nothing stored) when it would bind another account's number. */
    async put(record: VerificationRecord): Promise<void> {
      const row = await toRow(record);
      try {
        await table().insert(row).onConflict("user_id").merge();
      } catch (err) {
        if (isNumberTaken(err)) throw new NumberInUseError();
        throw err;
      }
    },
    /**
     * Stores both records in one transaction: an admin gives the number to `to`, and `from` (the
     * account that held it) loses it. NumberInUseError when a third account holds it by now.
     */
    async transfer(from: VerificationRecord | undefined, to: VerificationRecord): Promise<void> {
      const rows = [...(from ? [await toRow(from)] : []), await toRow(to)];
      try {
        await knex.transaction(async (trx) => {
          for (const row of rows)
            await trx<Row>("clinician_verifications").insert(row).onConflict("user_id").merge();
        });
      } catch (err) {
        if (isNumberTaken(err)) throw new NumberInUseError();
        throw err;
      }
    },
    /** The other account whose record binds this registry's number, if any. */
    async holderOf(
      registry: string,
      number: string,
      exceptUserId: string,
    ): Promise<VerificationRecord | undefined> {
      const row: Row | undefined = await table()
        .where({ number_hash: await hashOf(registry, number) })
        .andWhereNot({ user_id: exceptUserId })
        .first();
      return row && fromRow(row);
    },
    async withStatus(status: VerificationStatus): Promise<VerificationRecord[]> {
      const rows: Row[] = await table().where({ status }).orderBy("updated_at");
      return rows.map(fromRow);
    },
    async verified(now: Date): Promise<VerificationRecord[]> {
      const rows: Row[] = await table().where({ status: "verified" }).andWhere("expires_at", ">", now);
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

/** The directory entry of a verified record: the registered name where the registry gave one. */
export function clinicianOf(r: VerificationRecord): VerifiedClinician {
  return {
    user_id: r.user_id,
    display_name: r.registered_name ?? r.claimed_name,
    profession: r.profession ?? "unknown",
  };
}

export function isCurrentlyVerified(r: VerificationRecord | undefined, now = new Date()): boolean {
  return r?.status === "verified" && r.expires_at !== null && r.expires_at > now;
}
