import { createHash } from "node:crypto";
import {
  ensureAppserviceUser,
  MatrixRequestError,
  type AppserviceEvent,
  type DocumentStore,
  type SynapseAdmin,
} from "@medmesh/common";
import {
  ClientEvent,
  createClient,
  EventType,
  MatrixEvent,
  MsgType,
  RoomEvent,
  SyncState,
  type MatrixClient,
} from "matrix-js-sdk";
import type { Logger as SdkLogger } from "matrix-js-sdk/lib/logger.js";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import { loadBotDeviceState, needsSnapshotBefore } from "./device-state.ts";
import { botMessage } from "./messages.ts";
import { createBotInbox, type InboxEntry, type RawEvent } from "./inbox.ts";

/** What a user sent the bot in a direct chat, decrypted. */
export type BotMessage =
  | { kind: "text"; sender: string; roomId: string; eventId: string; body: string }
  | {
      kind: "file";
      sender: string;
      roomId: string;
      eventId: string;
      msgtype: "m.image" | "m.file";
      /** The file's name as sent (the event's body). */
      name: string;
      contentType: string;
      size: number;
      download(): Promise<Buffer>;
    };

/** What the bot sends: text, or a file it uploaded (`file` in an encrypted room, `url` in another). */
export type BotContent =
  | { msgtype: "m.text" | "m.notice"; body: string }
  | {
      msgtype: "m.image" | "m.file";
      body: string;
      info: { mimetype: string; size: number };
      file?: Record<string, unknown>;
      url?: string;
    };

export interface BotDeps {
  homeserverUrl: string;
  asToken: string;
  botUserId: string;
  /** Members that do not make a chat less direct (the room-admin bot the proxy adds to every room). */
  ignoredMembers: readonly string[];
  admin: SynapseAdmin;
  documents: DocumentStore;
  log: Logger;
  metrics: Registry;
  /** The answer to a direct message (plain text), or undefined for none. */
  onMessage(message: BotMessage): Promise<string | undefined>;
  /** Its display name (default "MedMesh verification"). */
  displayName?: string;
  /** How long a message whose room key has not arrived waits for it (default 20 s). */
  keyWaitMs?: number;
  /**
   * Whether a message in this room is the bot's to read (default: a direct chat with the sender).
   * Department accounts read every room they are in (departments/).
   */
  accepts?: (roomId: string, sender: string) => Promise<boolean>;
}

export interface Bot {
  /** Tells a local user something in their direct chat with the bot (created, encrypted, when missing). */
  tell(userId: string, text: string): Promise<void>;
  /**
   * The appservice transaction's events: those of the bot's direct chats go to its durable inbox
   * (before the transaction is acknowledged) and are handled from there, in order.
   */
  onEvents(events: readonly AppserviceEvent[]): Promise<void>;
  /**
   * Sends in a room the bot is in (encrypted where the room is); `key` makes a retry send nothing
   * new (the transaction ID is derived from it). The members' devices the client knows of receive it.
   */
  send(roomId: string, content: BotContent, key?: string): Promise<string>;
  /** The bot's matrix-js-sdk client (room state as its sync saw it; creating rooms, inviting, kicking). */
  readonly client: MatrixClient;
  /** The bot's device (the same across restarts). */
  readonly deviceId: string;
  stop(): void;
}

const dmKey = (userId: string): string => `bot.dm:${userId}`;
const pendingKey = (userId: string): string => `bot.pending:${userId}`;

/**
 * The MedMesh verification bot as a real, end-to-end encrypting Matrix client (matrix-js-sdk with
 * Rust crypto), so it can read what users write to it in encrypted direct chats and answer in
 * kind. It is a user of its own, joined only to direct chats: the room-admin bot that is in every
 * room has no device, so no room's keys are ever shared with MedMesh.
 *
 * Nothing it was sent is missed across restarts. Its device stays the same (the ID is stored and
 * logged in to again) and its Rust crypto store is snapshotted to the policy module's store before
 * every request that would make a newer state irreversible (see `needsSnapshotBefore`), so room
 * keys the server has handed over are never lost. What users write comes from the appservice
 * transactions (which Synapse retries while the service is down), through a durable inbox, not
 * from the client's live timeline; the client's /sync only carries keys and room state.
 */
export async function startBot(d: BotDeps): Promise<Bot> {
  // Department accounts are bots too: one counter for all, by account.
  const handledMetric =
    (d.metrics.getSingleMetric("medmesh_bot_messages_total") as Counter<"outcome" | "bot"> | undefined) ??
    new Counter({
      name: "medmesh_bot_messages_total",
      help: "Messages the bots handled, by bot and outcome (answered, undecryptable, failed)",
      labelNames: ["outcome", "bot"],
      registers: [d.metrics],
    });
  const handled = {
    inc: (l: { outcome: string }) => {
      handledMetric.inc({ ...l, bot: d.botUserId });
    },
  };
  const keyWaitMs = d.keyWaitMs ?? 20_000;
  const state = await loadBotDeviceState(d.documents, d.botUserId);
  const login = await loginAsAppservice(d, state.restored);
  if (login.device_id !== state.restored) await state.adopt(login.device_id);
  await deleteOtherDevices(d, login.device_id);
  const client = createClient({
    baseUrl: d.homeserverUrl,
    userId: d.botUserId,
    accessToken: login.access_token,
    deviceId: login.device_id,
    logger: sdkLogger(d.log),
    fetchFn: async (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (needsSnapshotBefore(init?.method ?? "GET", url)) await state.save();
      return fetch(input, init);
    },
  });
  await client.initRustCrypto({ useIndexedDB: true, cryptoDatabasePrefix: state.prefix(login.device_id) });
  await state.save();
  await client.setDisplayName(d.displayName ?? "MedMesh verification");
  const startedAt = Date.now();
  let stopped = false;
  // Read through a function: the flag changes while async loops run (the linter would assume not).
  const isStopped = (): boolean => stopped;

  /** Answers carry a transaction ID derived from what they answer: a second try sends nothing new. */
  const send = async (roomId: string, body: string, inReplyTo?: string): Promise<void> => {
    await waitForRoom(client, roomId);
    const content = { msgtype: MsgType.Notice, body } as const;
    if (inReplyTo) await client.sendMessage(roomId, content, txnIdFor(inReplyTo));
    else await client.sendMessage(roomId, content);
  };

  /**
   * Notices for a user who has not joined their direct chat yet wait in the store: a message
   * encrypted before they join would not be shared with their devices.
   */
  const flush = async (userId: string, roomId: string): Promise<void> => {
    const waiting = await d.documents.get(pendingKey(userId));
    if (!waiting || (await d.documents.get(dmKey(userId))) !== roomId) return;
    for (const text of JSON.parse(waiting) as string[]) await send(roomId, text);
    await d.documents.put(pendingKey(userId), "[]");
  };

  /** Whether the room is (still) a direct chat between the bot and `sender`, as Synapse says now. */
  const isDirectWith = async (roomId: string, sender: string): Promise<boolean> => {
    const { joined } = await client.getJoinedRoomMembers(roomId);
    const members = Object.keys(joined).filter((u) => !d.ignoredMembers.includes(u));
    return members.length === 2 && members.includes(sender) && members.includes(d.botUserId);
  };

  /** The event decrypted, waiting a while for a room key that may arrive just after the event. */
  const decrypted = async (entry: InboxEntry): Promise<MatrixEvent> => {
    const deadline = Math.max(entry.received_at, startedAt) + keyWaitMs;
    for (;;) {
      const event = new MatrixEvent(structuredClone(entry.event));
      await client.decryptEventIfNeeded(event);
      if (!event.isDecryptionFailure() || Date.now() >= deadline || stopped) return event;
      await new Promise((r) => setTimeout(r, 500));
    }
  };

  const handle = async (entry: InboxEntry): Promise<void> => {
    const raw = entry.event;
    const sender = typeof raw.sender === "string" ? raw.sender : undefined;
    if (!sender || sender === d.botUserId) return;
    if (raw.type === (EventType.RoomMember as string)) {
      const content = raw.content as { membership?: unknown } | undefined;
      if (raw.state_key === sender && content?.membership === "join") await flush(sender, raw.room_id);
      return;
    }
    if (!(await (d.accepts ?? isDirectWith)(raw.room_id, sender))) return;
    const event = await decrypted(entry);
    if (event.isDecryptionFailure()) {
      handled.inc({ outcome: "undecryptable" });
      await send(
        raw.room_id,
        "I could not read your last message (it was encrypted for an earlier session of mine). Please send it again.",
        raw.event_id,
      );
      return;
    }
    const message = botMessage(event, sender, raw.room_id, raw.event_id, (mxc) =>
      download(client, mxc, login.access_token),
    );
    if (!message) return;
    // Where the user talks to the bot is where the bot tells them about later changes.
    if ((await d.documents.get(dmKey(sender))) !== raw.room_id)
      await d.documents.put(dmKey(sender), raw.room_id);
    const answer = await d.onMessage(message);
    if (answer) await send(raw.room_id, answer, raw.event_id);
    handled.inc({ outcome: "answered" });
  };

  const inbox = createBotInbox(d.documents, d.botUserId);
  /** The rooms the bot is joined to, kept up to date from the transactions' membership events. */
  const rooms = new Set(await client.getJoinedRooms().then((r) => r.joined_rooms));
  const failures = new Map<string, number>();
  let draining = false;
  let again = false;
  /** Handles the inbox in order. A failing event is tried three times, then given up (logged). */
  const drain = (): void => {
    again = true;
    if (draining) return;
    draining = true;
    void (async () => {
      while (again && !isStopped()) {
        again = false;
        for (let entry = await inbox.next(); entry && !stopped; entry = await inbox.next()) {
          const id = entry.event.event_id;
          try {
            await handle(entry);
          } catch (err) {
            if (isStopped()) break;
            const n = (failures.get(id) ?? 0) + 1;
            failures.set(id, n);
            d.log.warn(
              { err, room_id: entry.event.room_id, event_id: id, attempt: n },
              "bot could not handle a message",
            );
            if (n < 3) {
              await new Promise((r) => setTimeout(r, 1000 * n));
              continue;
            }
            handled.inc({ outcome: "failed" });
          }
          failures.delete(id);
          await inbox.done(id);
        }
      }
    })()
      .catch((err: unknown) => {
        d.log.warn({ err }, "the bot's inbox could not be read; trying again with the next transaction");
      })
      .finally(() => {
        draining = false;
      });
  };

  // Invitations to a direct chat: joining makes the room (and its keys) part of the bot's sync.
  client.on(RoomEvent.MyMembership, (room, membership) => {
    if (membership === "invite")
      client.joinRoom(room.roomId).then(
        () => rooms.add(room.roomId),
        (err: unknown) => {
          d.log.warn({ err, room_id: room.roomId }, "bot could not join");
        },
      );
  });

  await new Promise<void>((resolve, reject) => {
    const onSync = (state: SyncState, _prev: SyncState | null, data?: { error?: Error }): void => {
      if (state === SyncState.Prepared) {
        client.off(ClientEvent.Sync, onSync);
        resolve();
      } else if (state === SyncState.Error) {
        client.off(ClientEvent.Sync, onSync);
        reject(new Error(`the bot's first sync failed: ${data?.error?.message ?? "unknown error"}`));
      }
    };
    client.on(ClientEvent.Sync, onSync);
    void client.startClient({ initialSyncLimit: 1, lazyLoadMembers: true });
  });
  d.log.info(
    { device_id: login.device_id, restored: state.restored === login.device_id },
    "bot started with end-to-end encryption",
  );
  drain(); // what an earlier run stored but did not finish

  const roomFor = async (userId: string): Promise<string> => {
    const known = await d.documents.get(dmKey(userId));
    if (known && client.getRoom(known)?.getMember(userId)?.membership !== "leave") return known;
    const { room_id: roomId } = await client.createRoom({
      invite: [userId],
      is_direct: true,
      preset: "trusted_private_chat" as never,
      name: "MedMesh",
      initial_state: [
        { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
      ],
    });
    rooms.add(roomId);
    await d.documents.put(dmKey(userId), roomId);
    return roomId;
  };

  return {
    deviceId: login.device_id,
    client,
    async send(roomId, content, key) {
      await waitForRoom(client, roomId);
      const message =
        content.msgtype === "m.text"
          ? ({ msgtype: MsgType.Text, body: content.body } as const)
          : content.msgtype === "m.notice"
            ? ({ msgtype: MsgType.Notice, body: content.body } as const)
            : (content as never);
      const sent = key
        ? await client.sendMessage(roomId, message, txnIdFor(key))
        : await client.sendMessage(roomId, message);
      return sent.event_id;
    },
    async tell(userId, text) {
      const roomId = await roomFor(userId);
      await waitForRoom(client, roomId);
      if (client.getRoom(roomId)?.getMember(userId)?.membership === "join") {
        await send(roomId, text);
        return;
      }
      const waiting = JSON.parse((await d.documents.get(pendingKey(userId))) ?? "[]") as string[];
      await d.documents.put(pendingKey(userId), JSON.stringify([...waiting, text]));
      // They may have joined while the notice was being stored.
      if (client.getRoom(roomId)?.getMember(userId)?.membership === "join") await flush(userId, roomId);
    },
    async onEvents(events) {
      const mine: RawEvent[] = [];
      for (const e of events) {
        if (!e.room_id || !e.event_id) continue;
        if (e.type === (EventType.RoomMember as string) && e.state_key === d.botUserId) {
          const membership = (e as { content?: { membership?: unknown } }).content?.membership;
          if (membership === "join") rooms.add(e.room_id);
          else if (membership === "leave" || membership === "ban") rooms.delete(e.room_id);
          continue;
        }
        if (!rooms.has(e.room_id) || e.sender === d.botUserId) continue;
        if (
          e.type === (EventType.RoomMessageEncrypted as string) ||
          e.type === (EventType.RoomMessage as string) ||
          e.type === (EventType.RoomMember as string)
        )
          mine.push(e as unknown as RawEvent);
      }
      if (mine.length > 0 && (await inbox.add(mine)) > 0) drain();
    },
    stop() {
      stopped = true;
      client.stopClient();
    },
  };
}

const txnIdFor = (eventId: string): string =>
  `mmbot-${createHash("sha256").update(eventId).digest("base64url").slice(0, 24)}`;

/** The bot's other devices (of runs before its device was kept, or never stored) are removed. */
async function deleteOtherDevices(d: BotDeps, keep: string): Promise<void> {
  const path = `/_synapse/admin/v2/users/${encodeURIComponent(d.botUserId)}`;
  const { devices } = await d.admin
    .request<{ devices: { device_id: string }[] }>("GET", `${path}/devices`)
    .catch((err: unknown) => {
      if (err instanceof MatrixRequestError && err.status === 404) return { devices: [] };
      throw err;
    });
  const others = devices.map((x) => x.device_id).filter((id) => id !== keep);
  if (others.length > 0) await d.admin.request("POST", `${path}/delete_devices`, { devices: others });
}

/** Logs in to the stored device again (same ID, same keys), or to a new one on first start. */
async function loginAsAppservice(
  d: BotDeps,
  deviceId: string | undefined,
): Promise<{ access_token: string; device_id: string }> {
  await ensureAppserviceUser(d.homeserverUrl, d.asToken, d.botUserId.slice(1, d.botUserId.indexOf(":")));
  const res = await fetch(new URL("/_matrix/client/v3/login", d.homeserverUrl), {
    method: "POST",
    headers: { authorization: `Bearer ${d.asToken}`, "content-type": "application/json" },
    body: JSON.stringify({
      type: "m.login.application_service",
      identifier: { type: "m.id.user", user: d.botUserId },
      initial_device_display_name: "MedMesh bot",
      ...(deviceId ? { device_id: deviceId } : {}),
    }),
    signal: AbortSignal.timeout(15_000),
  });
  const body = (await res.json()) as { access_token?: string; device_id?: string; error?: string };
  if (!res.ok || !body.access_token || !body.device_id)
    throw new Error(`the bot could not log in: ${body.error ?? String(res.status)}`);
  return { access_token: body.access_token, device_id: body.device_id };
}

async function download(client: MatrixClient, mxc: string, token: string): Promise<Buffer> {
  const url = client.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true);
  if (!url) throw new Error("not an mxc:// URL");
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` } });
  if (!res.ok) throw new Error(`media download failed with ${String(res.status)}`);
  return Buffer.from(await res.arrayBuffer());
}

/** A room the bot just created appears in its sync shortly after; encrypting needs it there. */
async function waitForRoom(client: MatrixClient, roomId: string): Promise<void> {
  for (let i = 0; i < 100 && !client.getRoom(roomId)?.hasEncryptionStateEvent(); i++)
    await new Promise((r) => setTimeout(r, 100));
}

function sdkLogger(log: Logger): SdkLogger {
  const logger: SdkLogger = {
    trace: () => undefined,
    debug: () => undefined,
    info: () => undefined,
    warn: () => undefined,
    error: (...msg: unknown[]) => {
      log.error({ sdk: msg.map(String).join(" ") }, "matrix-js-sdk error in the bot");
    },
    getChild: () => logger,
  };
  return logger;
}
