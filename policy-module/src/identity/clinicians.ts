import type { LocalClinicians, VerifiedClinician } from "./verification.ts";
import type { VerificationRecord, VerificationRecords } from "./records.ts";
import { clinicianOf, isCurrentlyVerified } from "./verifier.ts";

/**
 * The organisation's verified clinicians as the proxy asks about them on every invite and search:
 * held in memory (loaded from the store at start, updated on every change of status), so
 * `isVerified` costs a map look-up. Expiry is checked on every answer (fail closed).
 */
export async function storedClinicians(records: VerificationRecords): Promise<
  LocalClinicians & {
    update(record: VerificationRecord): void;
    record(userId: string): VerificationRecord | undefined;
  }
> {
  const byId = new Map((await records.verified(new Date())).map((r) => [r.user_id, r]));
  let version = 0;
  const current = (userId: string): VerificationRecord | undefined => {
    const r = byId.get(userId);
    return isCurrentlyVerified(r) ? r : undefined;
  };
  return {
    isVerified: (userId) => Promise.resolve(current(userId) !== undefined),
    all: (): VerifiedClinician[] => [...byId.values()].filter((r) => isCurrentlyVerified(r)).map(clinicianOf),
    get: (userId) => {
      const r = current(userId);
      return r && clinicianOf(r);
    },
    record: current,
    version: () => version,
    update(record) {
      if (record.status === "verified") byId.set(record.user_id, record);
      else byId.delete(record.user_id);
      version++;
    },
  };
}
