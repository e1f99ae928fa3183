import { randomBytes } from "node:crypto";
import { asUser, LeadershipLost, type AsUser } from "@medmesh/common";
import {
  DecryptionSettings,
  DeviceId,
  DeviceLists,
  EncryptionSettings,
  initAsync,
  OlmMachine,
  ProcessedToDeviceEventType,
  RoomId,
  TrustRequirement,
  UserId,
} from "@matrix-org/matrix-sdk-crypto-wasm";
import type { Logger } from "pino";
import type { GhostStore, PortalStore } from "../store/index.ts";
import { drop, restore, snapshot } from "@medmesh/common/crypto-store";
import { routeOf, type Outgoing } from "./device-requests.ts";
import { vendorJob, type VendorLeaders } from "./leaders.ts";

interface CryptoDeps {
  homeserverUrl: string;
  asToken: string;
  ghosts: GhostStore;
  portals: PortalStore;
  /** A ghost's device runs only where its vendor is led; its snapshots are fenced by that lease. */
  leaders: VendorLeaders;
  /** Asks the vendor's leader to make a ghost's device (a standby cannot drive one). */
  askLeader?: (userId: string) => Promise<void>;
  log: Logger;
  /** Called when room keys may have arrived (events waiting for them can be tried again). */
  onKeys?: () => void;
}

interface SyncResponse {
  next_batch: string;
  to_device?: { events?: unknown[] };
  device_lists?: { changed?: string[]; left?: string[] };
  device_one_time_keys_count?: Record<string, number>;
  device_unused_fallback_key_types?: string[];
}

interface Device {
  userId: string;
  deviceId: string;
  /** The name prefix of its IndexedDB databases in this run. */
  prefix: string;
  machine: OlmMachine;
  client: AsUser;
  /** Operations on one machine run one after another. */
  queue: Promise<unknown>;
  /** Stops the device's to-device /sync loop. */
  abort: AbortController;
}

/**
 * The bridge's end-to-end encryption: each ghost that takes part in an encrypted portal gets a
 * device of its own (created by the appservice, MSC4190) with a Rust crypto machine
 * (matrix-sdk-crypto-wasm). To-device messages, device-list changes and one-time-key counts
 * reach each machine through a /sync of that device filtered to exactly those.
 * Each device's crypto state is written to the store after every change, before the transaction
 * that caused it is acknowledged (crypto-store.ts), so a restarted bridge goes on with the same
 * devices and keys.
 */
export class BridgeCrypto {
  private readonly devices = new Map<string, Promise<Device>>();
  private readonly d: CryptoDeps;

  constructor(d: CryptoDeps) {
    this.d = d;
  }

  private ready: Promise<void> | undefined;

  /** Loads the crypto module and the list of stored sessions (once; device creation waits for it). */
  start(): Promise<void> {
    this.ready ??= this.load();
    return this.ready;
  }

  private async load(): Promise<void> {
    await initAsync();
  }

  /** The ghost's device: the one of earlier runs, restored, or a new one on first use (its vendor's leader only). */
  device(userId: string): Promise<Device> {
    if (this.closed || !this.d.leaders.leadsGhost(userId)) return Promise.reject(this.lost(userId));
    let device = this.devices.get(userId);
    if (!device) {
      device = this.createDevice(userId);
      device.catch(() => this.devices.delete(userId));
      this.devices.set(userId, device);
    }
    return device;
  }

  private lost(userId: string): LeadershipLost {
    return new LeadershipLost(vendorJob(this.d.leaders.vendorOf(userId) ?? "?"));
  }

  /**
   * The ghost's device exists (before it joins a room, so the members' clients share room keys
   * with it from the first message on): made here on the vendor's leader; on a standby (an
   * appservice transaction's invite) the leader is asked and its device awaited in the store.
   */
  async ensureDevice(userId: string): Promise<void> {
    if (this.d.leaders.leadsGhost(userId)) {
      await this.device(userId);
      return;
    }
    const has = async () => {
      const saved = await this.d.ghosts.device(userId);
      return saved?.device_id != null && saved.crypto_store != null;
    };
    if (await has()) return;
    await this.d.askLeader?.(userId);
    const deadline = Date.now() + ASK_LEADER_MS;
    while (Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 250));
      if (await has()) return;
      if (this.d.leaders.leadsGhost(userId)) return this.ensureDevice(userId); // elected meanwhile
    }
    // Answered 500: Synapse sends the transaction again.
    throw new Error(
      `the leader of ${vendorJob(this.d.leaders.vendorOf(userId) ?? "?")} made no device for ${userId}`,
    );
  }

  /** Stops the devices of a vendor's ghosts (its lease was lost): they are not driven from here any more. */
  release(vendor: string): void {
    for (const [userId, device] of this.devices) {
      if (this.d.leaders.vendorOf(userId) !== vendor) continue;
      this.devices.delete(userId);
      this.shutWhenMade(device);
    }
  }

  private async createDevice(userId: string): Promise<Device> {
    await this.start();
    const client = asUser(this.d.homeserverUrl, this.d.asToken, userId);
    const saved = await this.d.ghosts.device(userId);
    // Each run opens its databases under names of its own: a replica that drove the device before
    // (and lost its lease) may still hold the old ones open, which would block their replacement.
    const run = randomBytes(6).toString("hex");
    if (saved?.device_id && saved.crypto_store) {
      // The device of an earlier run, with its keys: it goes on as if nothing happened.
      const was = storeName(userId, saved.device_id);
      const prefix = storeName(userId, saved.device_id, run);
      await restore(saved.crypto_store, (name) =>
        name.startsWith(was) ? prefix + name.slice(was.length).replace(/^\|[0-9a-f]{12}/, "") : name,
      );
      const machine = await OlmMachine.initialize(new UserId(userId), new DeviceId(saved.device_id), prefix);
      const device: Device = {
        userId,
        deviceId: saved.device_id,
        prefix,
        machine,
        client,
        queue: Promise.resolve(),
        abort: new AbortController(),
      };
      // Sending is not snapshotted (that would cost a snapshot per message): a restored outbound
      // megolm session may be behind its last use, and a reused message index looks like a replay
      // to the receivers. Each room starts a new session instead.
      const rooms = await this.d.portals.roomsOf(userId);
      for (const room of rooms) await machine.invalidateGroupSession(new RoomId(room));
      await this.flush(device);
      this.syncLoop(device, saved.sync_token);
      return device;
    }
    if (!this.d.leaders.leadsGhost(userId)) throw this.lost(userId);
    if (saved?.device_id) {
      // Created, but its keys never reached the store: useless, replaced.
      await client("DELETE", `/_matrix/client/v3/devices/${encodeURIComponent(saved.device_id)}`, {}).catch(
        (err: unknown) => {
          this.d.log.warn({ user_id: userId, err }, "could not delete an unusable bridge device");
        },
      );
    }
    const deviceId = `MMB${randomBytes(6).toString("hex").toUpperCase()}`;
    await client("PUT", `/_matrix/client/v3/devices/${deviceId}`, { display_name: "MedMesh bridge" });
    await this.d.ghosts.newDevice(userId, deviceId, (trx) => this.d.leaders.fenceGhost(userId, trx));
    const prefix = storeName(userId, deviceId, run);
    const machine = await OlmMachine.initialize(new UserId(userId), new DeviceId(deviceId), prefix);
    const device: Device = {
      userId,
      deviceId,
      prefix,
      machine,
      client,
      queue: Promise.resolve(),
      abort: new AbortController(),
    };
    await this.flush(device);
    await this.persist(device);
    this.syncLoop(device, null);
    this.d.log.info({ user_id: userId, device_id: deviceId }, "bridge device created");
    return device;
  }

  /**
   * Writes the device's crypto state to the store (after every change, before it is acknowledged),
   * fenced by the vendor's lease: a deposed leader never overwrites its successor's snapshot.
   */
  private async persist(device: Device, syncToken?: string): Promise<void> {
    await this.d.ghosts.saveCrypto(
      device.userId,
      device.deviceId,
      await snapshot(device.prefix),
      syncToken,
      (trx) => this.d.leaders.fenceGhost(device.userId, trx),
    );
  }

  /**
   * The device's to-device messages (room keys), device-list changes and key counts, through
   * /sync filtered to nothing else. The next batch is asked for only after this one's effects
   * and its token are stored: Synapse keeps a device's to-device messages until then, so none is
   * lost to a crash. (Appservice transactions can push them too, MSC2409, but Synapse does not
   * retry those: a bridge that is down would lose room keys.)
   */
  private syncLoop(device: Device, since: string | null): void {
    const filter = JSON.stringify({
      room: { rooms: [] },
      presence: { types: [] },
      account_data: { types: [] },
    });
    let token = since;
    let failures = 0;
    const stopped = (): boolean => device.abort.signal.aborted || !this.d.leaders.leadsGhost(device.userId);
    void (async () => {
      while (!stopped()) {
        try {
          const path =
            `/_matrix/client/v3/sync?timeout=30000&filter=${encodeURIComponent(filter)}` +
            (token ? `&since=${encodeURIComponent(token)}` : "");
          const sync = await device.client<SyncResponse>("GET", path, undefined, {
            deviceId: device.deviceId,
            timeoutMs: 45_000,
            signal: device.abort.signal,
          });
          const events = sync.to_device?.events ?? [];
          await this.serial(device, async () => {
            const processed = await device.machine.receiveSyncChanges(
              JSON.stringify(events),
              new DeviceLists(
                (sync.device_lists?.changed ?? []).map((u) => new UserId(u)),
                (sync.device_lists?.left ?? []).map((u) => new UserId(u)),
              ),
              new Map(Object.entries(sync.device_one_time_keys_count ?? {})),
              new Set(sync.device_unused_fallback_key_types ?? []),
            );
            const unreadable = processed.filter((e) => e.type === ProcessedToDeviceEventType.UnableToDecrypt);
            if (unreadable.length > 0)
              this.d.log.warn(
                { user_id: device.userId, device_id: device.deviceId, unreadable: unreadable.length },
                "to-device messages this device could not decrypt",
              );
            await this.flush(device);
            await this.persist(device, sync.next_batch);
          });
          token = sync.next_batch;
          failures = 0;
          if (events.length > 0) this.d.onKeys?.();
        } catch (err) {
          if (stopped()) return;
          failures++;
          this.d.log.warn({ user_id: device.userId, err: describe(err) }, "to-device sync failed; retrying");
          await new Promise((r) => setTimeout(r, Math.min(30_000, 500 * 2 ** failures)));
        }
      }
    })();
  }

  private serial<T>(device: Device, fn: () => Promise<T>): Promise<T> {
    const next = device.queue.then(fn, fn);
    device.queue = next.catch(() => undefined);
    return next;
  }

  /** Sends what the machine wants sent (key uploads, queries, claims, to-device messages). */
  private async flush(device: Device): Promise<void> {
    for (const request of (await device.machine.outgoingRequests()) as Outgoing[])
      await this.send(device, request);
  }

  private async send(device: Device, r: Outgoing): Promise<void> {
    const route = routeOf(r);
    if (!route) return;
    // Nothing leaves a device whose vendor this replica no longer leads.
    if (!this.d.leaders.leadsGhost(device.userId)) throw this.lost(device.userId);
    const response = await device.client(route.method, route.path, JSON.parse(route.body), {
      deviceId: device.deviceId,
    });
    if (r.id) await device.machine.markRequestAsSent(r.id, r.type, JSON.stringify(response));
  }

  /** Encrypts a room event as the ghost, sharing the room key with every device of `members`. */
  async encrypt(
    userId: string,
    roomId: string,
    members: readonly string[],
    type: string,
    content: unknown,
  ): Promise<Record<string, unknown>> {
    const device = await this.device(userId);
    return this.serial(device, async () => {
      // wasm-bindgen moves the UserId objects into each call: every call gets fresh ones.
      const users = () => members.map((m) => new UserId(m));
      await device.machine.updateTrackedUsers(users());
      await this.flush(device);
      const claim = await device.machine.getMissingSessions(users());
      if (claim) await this.send(device, claim);
      const shares = await device.machine.shareRoomKey(new RoomId(roomId), users(), new EncryptionSettings());
      // Sharing a room key advances Olm sessions: stored before the messages leave, so a restart
      // never encrypts with a ratchet state the receivers have already seen.
      if (claim || shares.length > 0) await this.persist(device);
      for (const request of shares) await this.send(device, request);
      const encrypted = await device.machine.encryptRoomEvent(
        new RoomId(roomId),
        type,
        JSON.stringify(content),
      );
      return JSON.parse(encrypted) as Record<string, unknown>;
    });
  }

  /** Decrypts a room event with the device of one of the room's ghosts (any of them has the keys). */
  async decrypt(
    roomId: string,
    event: unknown,
    ghosts: readonly string[],
  ): Promise<{ type: string; content: Record<string, unknown> }> {
    let last = "no ghost of this room has a device";
    for (const userId of ghosts) {
      try {
        const device = await this.device(userId);
        return await this.serial(device, async () => {
          const decrypted = await device.machine.decryptRoomEvent(
            JSON.stringify(event),
            new RoomId(roomId),
            new DecryptionSettings(TrustRequirement.Untrusted),
          );
          return JSON.parse(decrypted.event) as { type: string; content: Record<string, unknown> };
        });
      } catch (err) {
        last = describe(err);
      }
    }
    throw new Error(last);
  }

  private closed = false;

  close(): void {
    this.closed = true;
    for (const d of this.devices.values()) this.shutWhenMade(d);
    this.devices.clear();
  }

  private shutWhenMade(device: Promise<Device>): void {
    void device.then(
      (made) => {
        shut(made, this.d.log);
      },
      () => undefined,
    );
  }
}

/** How long a standby waits for the vendor's leader to make a ghost's device. */
const ASK_LEADER_MS = 15_000;

/**
 * Stops a device's sync loop at once, and closes its machine after what is running on it; its
 * in-memory databases go then (its state is in the store: a replica elected again restores it).
 */
function shut(device: Device, log: Logger): void {
  device.abort.abort();
  void device.queue
    .then(async () => {
      device.machine.close();
      await drop(device.prefix);
    })
    .catch((err: unknown) => {
      log.warn({ err, user_id: device.userId }, "could not close a bridge device's databases");
    });
}

/** Each device's IndexedDB databases are named after it (and the run: ` |<12 hex digits>`). */
const storeName = (userId: string, deviceId: string, run?: string): string =>
  `medmesh-bridge|${userId}|${deviceId}${run === undefined ? "" : `|${run}`}`;

/** wasm errors are objects with a message or description, not always Errors. */
function describe(err: unknown): string {
  if (err instanceof Error) return err.message;
  const o = err as { message?: unknown; description?: unknown } | null;
  return String(o?.description ?? o?.message ?? err);
}
