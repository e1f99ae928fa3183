import { randomBytes } from "node:crypto";
import { asUser, type AsUser } from "@medmesh/common";
import {
  DecryptionSettings,
  DeviceId,
  DeviceLists,
  EncryptionSettings,
  initAsync,
  OlmMachine,
  RequestType,
  RoomId,
  TrustRequirement,
  UserId,
  type KeysBackupRequest,
  type KeysClaimRequest,
  type KeysQueryRequest,
  type KeysUploadRequest,
  type RoomMessageRequest,
  type SignatureUploadRequest,
  type ToDeviceRequest,
} from "@matrix-org/matrix-sdk-crypto-wasm";
import type { Knex } from "knex";
import type { Logger } from "pino";

type Outgoing =
  | KeysUploadRequest
  | KeysQueryRequest
  | KeysClaimRequest
  | ToDeviceRequest
  | SignatureUploadRequest
  | RoomMessageRequest
  | KeysBackupRequest;

/** The end-to-end encryption extensions of an appservice transaction (MSC2409, MSC3202). */
export interface TransactionCrypto {
  toDevice: { to_user_id?: string; to_device_id?: string; type?: string }[];
  deviceLists: { changed: string[]; left: string[] };
  otkCounts: Record<string, Record<string, Record<string, number>>>;
  fallbackKeys: Record<string, Record<string, string[]>>;
}

export function transactionCrypto(body: Record<string, unknown>): TransactionCrypto {
  const lists = body["org.matrix.msc3202.device_lists"] as
    Partial<TransactionCrypto["deviceLists"]> | undefined;
  return {
    toDevice: (body["de.sorunome.msc2409.to_device"] ??
      body.to_device ??
      []) as TransactionCrypto["toDevice"],
    deviceLists: { changed: lists?.changed ?? [], left: lists?.left ?? [] },
    otkCounts: (body["org.matrix.msc3202.device_one_time_keys_count"] ??
      {}) as TransactionCrypto["otkCounts"],
    fallbackKeys: (body["org.matrix.msc3202.device_unused_fallback_key_types"] ??
      {}) as TransactionCrypto["fallbackKeys"],
  };
}

interface Device {
  userId: string;
  deviceId: string;
  machine: OlmMachine;
  client: AsUser;
  /** Operations on one machine run one after another. */
  queue: Promise<unknown>;
}

/**
 * The bridge's end-to-end encryption: each ghost that takes part in an encrypted portal gets a
 * device of its own (created by the appservice, MSC4190) with a Rust crypto machine
 * (matrix-sdk-crypto-wasm). To-device messages, device-list changes and one-time-key counts
 * reach the machines through appservice transactions (MSC2409/MSC3202), so there is no /sync.
 * Machines live in memory; the megolm sessions they receive are exported to the store in the
 * same transaction that acknowledges them, so events sent before a restart stay decryptable.
 */
export class BridgeCrypto {
  private readonly devices = new Map<string, Promise<Device>>();
  private readonly storedSessions = new Set<string>();
  private readonly d: { homeserverUrl: string; asToken: string; knex: Knex; log: Logger };

  constructor(d: { homeserverUrl: string; asToken: string; knex: Knex; log: Logger }) {
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
    const rows = await this.d.knex("bridge_room_keys").select<{ session_id: string }[]>("session_id");
    for (const r of rows) this.storedSessions.add(r.session_id);
  }

  /** The ghost's device this run (created on first use; the previous run's device is deleted). */
  device(userId: string): Promise<Device> {
    let device = this.devices.get(userId);
    if (!device) {
      device = this.createDevice(userId);
      device.catch(() => this.devices.delete(userId));
      this.devices.set(userId, device);
    }
    return device;
  }

  hasDevice(userId: string): boolean {
    return this.devices.has(userId);
  }

  private async createDevice(userId: string): Promise<Device> {
    await this.start();
    const client = asUser(this.d.homeserverUrl, this.d.asToken, userId);
    const previous = await this.d
      .knex("bridge_ghosts")
      .where({ user_id: userId })
      .first<{ device_id: string | null } | undefined>("device_id");
    if (previous?.device_id) {
      await client(
        "DELETE",
        `/_matrix/client/v3/devices/${encodeURIComponent(previous.device_id)}`,
        {},
      ).catch((err: unknown) => {
        this.d.log.warn({ user_id: userId, err }, "could not delete the previous bridge device");
      });
    }
    const deviceId = `MMB${randomBytes(6).toString("hex").toUpperCase()}`;
    await client("PUT", `/_matrix/client/v3/devices/${deviceId}`, { display_name: "MedMesh bridge" });
    await this.d.knex("bridge_ghosts").where({ user_id: userId }).update({ device_id: deviceId });
    const machine = await OlmMachine.initialize(new UserId(userId), new DeviceId(deviceId));
    const device: Device = { userId, deviceId, machine, client, queue: Promise.resolve() };
    await this.flush(device);
    this.d.log.info({ user_id: userId, device_id: deviceId }, "bridge device ready");
    return device;
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
    const call = (method: string, path: string, body: string) =>
      device.client(method, path, JSON.parse(body), { deviceId: device.deviceId });
    let response: unknown;
    switch (r.type) {
      case RequestType.KeysUpload:
        response = await call("POST", "/_matrix/client/v3/keys/upload", r.body);
        break;
      case RequestType.KeysQuery:
        response = await call("POST", "/_matrix/client/v3/keys/query", r.body);
        break;
      case RequestType.KeysClaim:
        response = await call("POST", "/_matrix/client/v3/keys/claim", r.body);
        break;
      case RequestType.SignatureUpload:
        response = await call("POST", "/_matrix/client/v3/keys/signatures/upload", r.body);
        break;
      case RequestType.ToDevice: {
        const t = r as unknown as { event_type: string; txn_id: string; body: string };
        response = await call(
          "PUT",
          `/_matrix/client/v3/sendToDevice/${encodeURIComponent(t.event_type)}/${encodeURIComponent(t.txn_id)}`,
          t.body,
        );
        break;
      }
      case RequestType.RoomMessage: {
        const m = r as RoomMessageRequest;
        response = await call(
          "PUT",
          `/_matrix/client/v3/rooms/${encodeURIComponent(m.room_id)}/send/${encodeURIComponent(m.event_type)}/${encodeURIComponent(m.txn_id)}`,
          m.body,
        );
        break;
      }
      default:
        return; // key backup: the bridge keeps its keys in its own store instead
    }
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
      const settings = new EncryptionSettings();
      for (const request of await device.machine.shareRoomKey(new RoomId(roomId), users(), settings))
        await this.send(device, request);
      const encrypted = await device.machine.encryptRoomEvent(
        new RoomId(roomId),
        type,
        JSON.stringify(content),
      );
      return JSON.parse(encrypted) as Record<string, unknown>;
    });
  }

  /**
   * Feeds a transaction's to-device messages, device-list changes and key counts to the machines
   * they are for, then stores the megolm sessions that arrived — before the transaction is
   * acknowledged. Messages for devices of an earlier run are dropped (their keys are gone).
   */
  async receive(tx: TransactionCrypto): Promise<void> {
    const byUser = new Map<string, typeof tx.toDevice>();
    for (const m of tx.toDevice) {
      if (!m.to_user_id) continue;
      byUser.set(m.to_user_id, [...(byUser.get(m.to_user_id) ?? []), m]);
    }
    const affected = new Set([...byUser.keys(), ...Object.keys(tx.otkCounts)]);
    if (tx.deviceLists.changed.length + tx.deviceLists.left.length > 0)
      for (const u of this.devices.keys()) affected.add(u);
    for (const userId of affected) {
      if (!this.devices.has(userId)) continue;
      const device = await this.device(userId);
      const messages = (byUser.get(userId) ?? []).filter((m) => m.to_device_id === device.deviceId);
      const counts = new Map(Object.entries(tx.otkCounts[userId]?.[device.deviceId] ?? {}));
      const fallback = tx.fallbackKeys[userId]?.[device.deviceId];
      await this.serial(device, async () => {
        await device.machine.receiveSyncChanges(
          JSON.stringify(messages),
          new DeviceLists(
            tx.deviceLists.changed.map((u) => new UserId(u)),
            tx.deviceLists.left.map((u) => new UserId(u)),
          ),
          counts,
          fallback ? new Set(fallback) : undefined,
        );
        await this.flush(device);
        await this.storeNewSessions(device);
      });
    }
  }

  private async storeNewSessions(device: Device): Promise<void> {
    const exported = JSON.parse(
      await device.machine.exportRoomKeys((s) => !this.storedSessions.has(s.sessionId)),
    ) as { session_id: string; room_id: string }[];
    if (exported.length === 0) return;
    await this.d
      .knex("bridge_room_keys")
      .insert(
        exported.map((e) => ({ session_id: e.session_id, room_id: e.room_id, exported: JSON.stringify(e) })),
      )
      .onConflict("session_id")
      .ignore();
    for (const e of exported) this.storedSessions.add(e.session_id);
  }

  /**
   * Decrypts a room event with the device of one of the room's ghosts. A device that cannot
   * (it was created after the keys were sent) is given the room's stored sessions first.
   */
  async decrypt(
    roomId: string,
    event: unknown,
    ghosts: readonly string[],
  ): Promise<{ type: string; content: Record<string, unknown> }> {
    const live = ghosts.filter((g) => this.devices.has(g));
    const candidates = live.length > 0 ? live : ghosts.slice(0, 1);
    let last: unknown = new Error("no ghost of this room has a device");
    for (const userId of candidates) {
      const device = await this.device(userId);
      for (const importFirst of [false, true]) {
        try {
          return await this.serial(device, async () => {
            if (importFirst) await this.importRoomKeys(device, roomId);
            const decrypted = await device.machine.decryptRoomEvent(
              JSON.stringify(event),
              new RoomId(roomId),
              new DecryptionSettings(TrustRequirement.Untrusted),
            );
            return JSON.parse(decrypted.event) as { type: string; content: Record<string, unknown> };
          });
        } catch (err) {
          last = err;
        }
      }
    }
    throw last instanceof Error ? last : new Error(String(last));
  }

  private async importRoomKeys(device: Device, roomId: string): Promise<void> {
    const rows = await this.d
      .knex("bridge_room_keys")
      .where({ room_id: roomId })
      .select<{ exported: unknown }[]>("exported");
    if (rows.length === 0) return;
    const keys = rows.map(
      (r) => (typeof r.exported === "string" ? JSON.parse(r.exported) : r.exported) as unknown,
    );
    await device.machine.importExportedRoomKeys(JSON.stringify(keys), () => undefined);
  }

  close(): void {
    for (const d of this.devices.values())
      void d
        .then((x) => {
          x.machine.close();
        })
        .catch(() => undefined);
    this.devices.clear();
  }
}
