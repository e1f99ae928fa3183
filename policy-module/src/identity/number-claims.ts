import { ApiError, type AuditLog } from "@medmesh/common";
import { BINDING_STATUSES } from "./number-binding.ts";
import { NumberInUseError, type VerificationRecord, type VerificationRecords } from "./records.ts";

/*
 * The verifier's side of "one registration number, one account" (the store's side, the unique
 * index, is number-binding.ts): who holds a number, a deactivated holder's release, a second
 * claim refused or marked for review, and the admin's decision that moves a number.
 */

export const CONFLICT_REASON =
  "This registration number is already bound to another account of this organisation; the organisation's admin decides which account it belongs to";
const RELEASED_REASON = "The account was deactivated; its registration number was released";
const TRANSFERRED_REASON =
  "The organisation's admin bound this registration number to another account after reviewing its ID document";

export interface NumberClaimsDeps {
  records: VerificationRecords;
  audit: AuditLog;
  /** The verifier's audit of a record (action, actor, extra details). */
  auditRecord: (
    r: VerificationRecord,
    action: string,
    actor: string,
    extra?: Record<string, unknown>,
    log?: AuditLog,
  ) => Promise<void>;
  onChange?: (record: VerificationRecord, actor: string) => void;
  duplicateNumber: "refuse" | "review";
  accountGone?: (userId: string) => Promise<boolean>;
  validityMs: number;
  /** MedMesh itself, as the actor of a release. */
  actor: string;
}

/** Where a release's writes go (the record and its audit), and who runs them (e.g. a transaction). */
type ReleaseWriters = { records: Pick<VerificationRecords, "put">; audit: AuditLog };
type ReleaseCommit = (next: VerificationRecord, write: (w: ReleaseWriters) => Promise<void>) => Promise<void>;

export function createNumberClaims(d: NumberClaimsDeps) {
  /** Gives up a record's number: a verified record is revoked, a claim in progress rejected. */
  const losing = (r: VerificationRecord, reason: string, now: Date): VerificationRecord => ({
    ...r,
    status: r.status === "verified" ? "revoked" : "rejected",
    reason,
    expires_at: null,
    updated_at: now,
  });

  return {
    /**
     * The account was deactivated (Synapse's report, or found by the re-verification run): a
     * record that holds its number gives it up — verified → revoked, a claim in progress →
     * rejected — audited as a release, and told to everyone a revocation is told. Nothing to do
     * (undefined) when the record holds no number, so a repeated report changes nothing.
     */
    async deactivated(
      r: VerificationRecord | undefined,
      how: { by_admin: boolean } | { found_by: "reverify" },
      commit?: ReleaseCommit,
    ): Promise<VerificationRecord | undefined> {
      if (!r || !BINDING_STATUSES.has(r.status)) return undefined;
      const released = losing(r, RELEASED_REASON, new Date());
      const write = async (w: ReleaseWriters): Promise<void> => {
        await w.records.put(released);
        const details = { cause: "account_deactivated", ...how };
        await d.auditRecord(released, "identity.release", d.actor, details, w.audit);
      };
      await (commit ? commit(released, write) : write({ records: d.records, audit: d.audit }));
      d.onChange?.(released, d.actor);
      return released;
    },

    /** The other account bound to the record's number, after releasing a deactivated account's. */
    async holderOf(record: VerificationRecord): Promise<string | undefined> {
      const holder = await d.records.holderOf(record.registry, record.registration_number, record.user_id);
      if (!holder) return undefined;
      if (!(await d.accountGone?.(holder.user_id))) return holder.user_id;
      const released = losing(holder, RELEASED_REASON, new Date());
      await d.records.put(released);
      await d.auditRecord(released, "identity.release", d.actor);
      d.onChange?.(released, d.actor);
      return undefined;
    },

    /** A claim of a number another account holds: refused (nothing stored), or marked for review. */
    async conflicted(record: VerificationRecord, holder: string, actor: string): Promise<VerificationRecord> {
      if (d.duplicateNumber === "review") return { ...record, conflict_with: holder };
      await d.audit.record({
        actor,
        on_behalf_of: record.user_id,
        action: "identity.request",
        object: record.user_id,
        outcome: "number_in_use",
        details: { registry: record.registry, conflict_with: holder },
      });
      throw new NumberInUseError();
    },

    /**
     * The admin gives the number to the reviewed account: the account that held it loses it (its
     * verification is revoked), both in one transaction. If the holder changed since the review
     * began, nothing is decided and the admin is shown the new conflict.
     */
    async approve(r: VerificationRecord, reviewer: string): Promise<VerificationRecord> {
      const holder = await d.records.holderOf(r.registry, r.registration_number, r.user_id);
      const now = new Date();
      if (holder && holder.user_id !== r.conflict_with) {
        await d.records.put({ ...r, conflict_with: holder.user_id, updated_at: now });
        throw new ApiError(
          "ORG.MEDMESH.NUMBER_IN_USE",
          `The number is now bound to ${holder.user_id}, not ${String(r.conflict_with)}; review again`,
        );
      }
      const { conflict_with: was, ...rest } = r;
      const next: VerificationRecord = {
        ...rest,
        status: "verified",
        reason: null,
        verified_at: now,
        expires_at: new Date(now.getTime() + d.validityMs),
        updated_at: now,
      };
      const lost = holder && losing(holder, TRANSFERRED_REASON, now);
      await d.records.transfer(lost, next);
      await d.auditRecord(next, "identity.review", reviewer, { conflict_with: was });
      d.onChange?.(next, reviewer);
      if (lost) {
        await d.auditRecord(lost, "identity.release", reviewer, { bound_to: r.user_id });
        d.onChange?.(lost, reviewer);
      }
      return next;
    },
  };
}
