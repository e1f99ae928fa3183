import { randomUUID } from "node:crypto";

/**
 * A sync filter definition of its own for each client start. Synapse answers a repeated initial
 * sync — same access token, same filter — from its sync response cache for a couple of minutes, so
 * a device started again soon after its last start (a restarted driver, a bot taken over by a
 * standby) was shown the rooms of that earlier sync: rooms joined since were missing and their
 * encryption state unknown to its crypto layer until the next sync. The filter leaves out a
 * presence type nobody sends, so it changes nothing else.
 */
export function freshSyncFilter(): { presence: { not_types: string[] } } {
  return { presence: { not_types: [`org.medmesh.start.${randomUUID()}`] } };
}

/**
 * After that fresh initial sync, for a device whose crypto store was restored from an earlier run:
 * only an incremental sync (`since`) carries the device-list changes of the time the device was
 * stopped, so every user it tracks has their devices asked again — else it would share room keys
 * with the devices it knew then and not with those added since (matrix-js-sdk's
 * `markAllTrackedUsersAsDirty`, on its Rust crypto backend).
 */
export async function refreshTrackedDevices(crypto: unknown): Promise<void> {
  const backend = crypto as { markAllTrackedUsersAsDirty?: () => Promise<void> } | undefined;
  await backend?.markAllTrackedUsersAsDirty?.();
}
