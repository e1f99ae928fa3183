import { ClientEvent, createClient, SyncState, type MatrixClient } from "matrix-js-sdk";
import type { Logger as SdkLogger } from "matrix-js-sdk/lib/logger.js";

export interface ClientUser {
  userId: string;
  accessToken: string;
  deviceId: string;
}

// matrix-js-sdk logs every sync and crypto step at debug/info; tests want only its errors.
const quiet: SdkLogger = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: (...msg: unknown[]) => {
    console.error("[matrix-js-sdk]", ...msg);
  },
  getChild: () => quiet,
};

/**
 * A real Matrix client: matrix-js-sdk with Rust crypto (crypto-wasm, in-memory store), started
 * and synced once before it is returned.
 */
export async function startClient(baseUrl: string, user: ClientUser): Promise<MatrixClient> {
  const client = createClient({
    baseUrl,
    userId: user.userId,
    accessToken: user.accessToken,
    deviceId: user.deviceId,
    logger: quiet,
  });
  await client.initRustCrypto({ useIndexedDB: false });
  const prepared = new Promise<void>((resolve, reject) => {
    const onSync = (state: SyncState, _prev: SyncState | null, data?: { error?: Error }): void => {
      if (state === SyncState.Prepared) {
        client.off(ClientEvent.Sync, onSync);
        resolve();
      } else if (state === SyncState.Error) {
        client.off(ClientEvent.Sync, onSync);
        reject(
          new Error(`initial sync of ${user.userId} failed: ${data?.error?.message ?? "unknown error"}`),
        );
      }
    };
    client.on(ClientEvent.Sync, onSync);
  });
  await client.startClient({ initialSyncLimit: 20 });
  await prepared;
  return client;
}

/** Every m.room.message body in the room, oldest first, decrypted (paginating back to the start). */
export async function roomBodies(client: MatrixClient, roomId: string): Promise<string[]> {
  const room = client.getRoom(roomId);
  if (!room) throw new Error(`no room ${roomId}`);
  const timeline = room.getLiveTimeline();
  while (await client.paginateEventTimeline(timeline, { backwards: true, limit: 250 }));
  const events = timeline.getEvents();
  await Promise.all(events.map((e) => client.decryptEventIfNeeded(e)));
  return events
    .filter((e) => e.getType() === "m.room.message")
    .map((e) => e.getContent<{ body?: string }>().body ?? "");
}
