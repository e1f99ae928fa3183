import type { Knex } from "knex";

/** Runs first in a write's transaction (the ghost's vendor lease): throws to write nothing. */
export type Fence = (trx: Knex.Transaction) => Promise<void>;

export interface GhostProfile {
  display_name: string | null;
  registration: unknown;
  avatar_source: string | null;
}

export interface GhostDevice {
  device_id: string | null;
  crypto_store: Buffer | null;
  sync_token: string | null;
}

export interface DueGhost {
  user_id: string;
  display_name: string | null;
  registration: unknown;
}

/**
 * Ghosts (`bridge_ghosts`): the vendor user behind each, what the bridge last set as its profile,
 * its registration and the identity module's answer, and its device's crypto state.
 */
export function ghostStore(knex: Knex) {
  const ghost = (userId: string) => knex("bridge_ghosts").where({ user_id: userId });
  return {
    profile: (userId: string): Promise<GhostProfile | undefined> =>
      ghost(userId).first<GhostProfile | undefined>("display_name", "registration", "avatar_source"),
    async add(userId: string, vendor: string, remoteId: string): Promise<void> {
      await knex("bridge_ghosts")
        .insert({ user_id: userId, vendor, remote_id: remoteId })
        .onConflict("user_id")
        .ignore();
    },
    async setProfile(
      userId: string,
      p: { display_name: string; registration?: string; verification_due?: true },
    ): Promise<void> {
      await ghost(userId).update(p);
    },
    async setAvatarSource(userId: string, avatar: string): Promise<void> {
      await ghost(userId).update({ avatar_source: avatar });
    },
    remote: (userId: string): Promise<{ vendor: string; remote_id: string } | undefined> =>
      ghost(userId).first<{ vendor: string; remote_id: string } | undefined>("vendor", "remote_id"),

    device: (userId: string): Promise<GhostDevice | undefined> =>
      ghost(userId).first<GhostDevice | undefined>("device_id", "crypto_store", "sync_token"),
    /** A new device replaces the last one; its crypto state starts empty. */
    newDevice: (userId: string, deviceId: string, fence?: Fence): Promise<void> =>
      knex.transaction(async (trx) => {
        await fence?.(trx);
        await trx("bridge_ghosts")
          .where({ user_id: userId })
          .update({ device_id: deviceId, crypto_store: null, sync_token: null });
      }),
    /** The device's crypto snapshot; `fence` first, in the same transaction (a deposed leader writes nothing). */
    saveCrypto: (
      userId: string,
      deviceId: string,
      snapshot: Buffer,
      syncToken?: string,
      fence?: Fence,
    ): Promise<void> =>
      knex.transaction(async (trx) => {
        await fence?.(trx);
        await trx("bridge_ghosts")
          .where({ user_id: userId, device_id: deviceId })
          .update({ crypto_store: snapshot, ...(syncToken === undefined ? {} : { sync_token: syncToken }) });
      }),

    /** Ghosts (of the `vendors`) whose registration is due for the identity module. */
    dueForVerification: (limit: number, vendors: readonly string[]): Promise<DueGhost[]> =>
      knex("bridge_ghosts")
        .where({ verification_due: true })
        .whereIn("vendor", vendors)
        .orderBy("user_id")
        .limit(limit)
        .select<DueGhost[]>("user_id", "display_name", "registration"),
    /** The identity module's answer, unless the registration or name changed meanwhile (still due). */
    async verified(g: DueGhost, registration: unknown, answer: string): Promise<void> {
      await knex("bridge_ghosts")
        .where({ user_id: g.user_id, verification_due: true, display_name: g.display_name })
        .whereRaw("registration = ?::jsonb", [JSON.stringify(registration)])
        .update({ verification_due: false, verification: answer });
    },
  };
}
export type GhostStore = ReturnType<typeof ghostStore>;
