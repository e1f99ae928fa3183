import { createHash, randomBytes } from "node:crypto";
import { restore, snapshot } from "@medmesh/common/crypto-store";
import type { DocumentStore } from "@medmesh/common";

interface Stored {
  device_id: string;
  /** The device's IndexedDB databases (base64), or null while none was written yet. */
  crypto: string | null;
  /** The databases' name prefix in the snapshot (absent: `medmesh-bot|<user>|<device>`, before runs had their own). */
  prefix?: string;
}

/** Writes a document (the bots' host fences it: a replica that lost the bots' lease writes nothing). */
export type PutDocument = (name: string, value: string) => Promise<void>;

export interface BotDeviceState {
  /** The device of an earlier run whose crypto state was stored (and is now restored), if any. */
  restored: string | undefined;
  /** Records a freshly logged-in device, before its crypto store is opened. */
  adopt(deviceId: string): Promise<void>;
  /** The IndexedDB prefix of the device's Rust crypto store (matrix-js-sdk `cryptoDatabasePrefix`). */
  prefix(deviceId: string): string;
  /** Writes the device's crypto store to the policy module's store (skipped when unchanged). */
  save(): Promise<void>;
}

/**
 * The bot's device and its Rust crypto store, kept in one document of the policy module's store
 * (`bot.device:<user>`) so a restarted bot — or the replica that takes the bots over — goes on
 * with the same device and every key it received. The snapshot is taken by the caller before
 * anything that would make the change irreversible elsewhere (acknowledging to-device messages,
 * publishing keys, sending with advanced ratchets). Each run restores under names of its own: a
 * process that ran the bot before (and lost it) may still hold its old databases open.
 */
export async function loadBotDeviceState(
  documents: DocumentStore,
  userId: string,
  put: PutDocument = (name, value) => documents.put(name, value),
): Promise<BotDeviceState> {
  const key = `bot.device:${userId}`;
  const run = randomBytes(6).toString("hex");
  const prefix = (deviceId: string): string => `medmesh-bot|${userId}|${deviceId}|${run}`;
  const raw = await documents.get(key);
  const stored = raw ? (JSON.parse(raw) as Stored) : undefined;
  let deviceId: string | undefined;
  let lastHash: string | undefined;
  if (stored?.crypto) {
    const data = Buffer.from(stored.crypto, "base64");
    const was = stored.prefix ?? `medmesh-bot|${userId}|${stored.device_id}`;
    const now = prefix(stored.device_id);
    await restore(data, (name) => (name.startsWith(was) ? now + name.slice(was.length) : name));
    deviceId = stored.device_id;
    lastHash = hash(data);
  }
  // Saves run one after another: two snapshots written out of order would lose the newer one.
  let queue: Promise<void> = Promise.resolve();
  const write = async (): Promise<void> => {
    if (!deviceId) return;
    const data = await snapshot(prefix(deviceId)); // run IDs are all 12 hex digits: none is a prefix of another
    const h = hash(data);
    if (h === lastHash) return;
    const value: Stored = { device_id: deviceId, crypto: data.toString("base64"), prefix: prefix(deviceId) };
    await put(key, JSON.stringify(value));
    lastHash = h;
  };
  return {
    restored: deviceId,
    prefix,
    async adopt(id) {
      deviceId = id;
      lastHash = undefined;
      await put(key, JSON.stringify({ device_id: id, crypto: null } satisfies Stored));
    },
    save() {
      const next = queue.then(write);
      queue = next.catch(() => undefined);
      return next;
    },
  };
}

const hash = (data: Buffer): string => createHash("sha256").update(data).digest("base64");

/**
 * Requests after which a crash must not lose what the crypto store holds now: a /sync with a
 * `since` token deletes the to-device messages (room keys) of the batch before it on the server;
 * key uploads publish keys whose private halves must exist; to-device and room sends go out with
 * ratchets that must never be used again.
 */
export function needsSnapshotBefore(method: string, url: URL): boolean {
  const path = url.pathname;
  if (path.endsWith("/sync")) return url.searchParams.has("since");
  if (method === "GET") return false;
  return (
    path.endsWith("/keys/upload") ||
    path.endsWith("/keys/signatures/upload") ||
    path.includes("/sendToDevice/") ||
    /\/rooms\/[^/]+\/send\//.test(path)
  );
}
