import type { NotificationStore } from "@medmesh/common";
import type { LocalClinicians, VerifiedClinician } from "./verification.ts";
import type { VerificationRecord, VerificationRecords } from "./records.ts";
import { clinicianOf, isCurrentlyVerified } from "./records.ts";

/** Announced (user ID as payload) whenever an instance changed a clinician's status in the store. */
export const STATUS_CHANNEL = "medmesh_identity_status";

/**
 * The organisation's verified clinicians as the proxy asks about them on every invite and search:
 * held in memory (loaded from the store at start, updated on every change of status), so
 * `isVerified` costs a map look-up. Expiry is checked on every answer (fail closed).
 *
 * Several instances share one store: each change is announced on the store's notifications
 * (PostgreSQL LISTEN/NOTIFY), and every instance reloads that user's record from the store, so a
 * revocation at one replica holds at all of them within the notification's delay. When the
 * listening connection was lost, the whole set is reloaded once it is back.
 */
export async function storedClinicians(
  records: VerificationRecords,
  notifications?: NotificationStore,
): Promise<
  LocalClinicians & {
    update(record: VerificationRecord): void;
    record(userId: string): VerificationRecord | undefined;
    /** Reads the user's record from the store again (after another instance changed it). */
    reload(userId: string): Promise<void>;
  }
> {
  const byId = new Map((await records.verified(new Date())).map((r) => [r.user_id, r]));
  let version = 0;
  const current = (userId: string): VerificationRecord | undefined => {
    const r = byId.get(userId);
    return isCurrentlyVerified(r) ? r : undefined;
  };
  const update = (record: VerificationRecord): void => {
    if (record.status === "verified") byId.set(record.user_id, record);
    else byId.delete(record.user_id);
    version++;
  };
  const reload = async (userId: string): Promise<void> => {
    const r = await records.get(userId);
    if (r) update(r);
    else if (byId.delete(userId)) version++;
  };
  const reloadAll = async (): Promise<void> => {
    const all = await records.verified(new Date());
    byId.clear();
    for (const r of all) byId.set(r.user_id, r);
    version++;
  };
  if (notifications) {
    const resync = (): void => {
      reloadAll().catch(() => {
        // Fail closed: until the store answers again, nobody is verified here.
        byId.clear();
        version++;
        setTimeout(resync, 5000).unref();
      });
    };
    await notifications.listen(
      STATUS_CHANNEL,
      (userId) => {
        reload(userId).catch(() => {
          byId.delete(userId);
          version++;
        });
      },
      resync,
    );
  }
  return {
    isVerified: (userId) => Promise.resolve(current(userId) !== undefined),
    all: (): VerifiedClinician[] => [...byId.values()].filter((r) => isCurrentlyVerified(r)).map(clinicianOf),
    get: (userId) => {
      const r = current(userId);
      return r && clinicianOf(r);
    },
    record: current,
    version: () => version,
    update,
    reload,
  };
}
