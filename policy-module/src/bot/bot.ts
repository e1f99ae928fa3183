import {
  decryptAttachment,
  isEncryptedFile,
  ensureAppserviceUser,
  MatrixRequestError,
  type DocumentStore,
  type SynapseAdmin,
} from "@medmesh/common";
import {
  ClientEvent,
  createClient,
  EventType,
  MsgType,
  RoomEvent,
  SyncState,
  type MatrixClient,
  type MatrixEvent,
  type Room,
} from "matrix-js-sdk";
import type { Logger as SdkLogger } from "matrix-js-sdk/lib/logger.js";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";

/** What a user sent the bot in a direct chat, decrypted. */
export type BotMessage =
  | { kind: "text"; sender: string; roomId: string; body: string }
  | {
      kind: "file";
      sender: string;
      roomId: string;
      contentType: string;
      size: number;
      download(): Promise<Buffer>;
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
}

export interface Bot {
  /** Tells a local user something in their direct chat with the bot (created, encrypted, when missing). */
  tell(userId: string, text: string): Promise<void>;
  stop(): void;
}

const dmKey = (userId: string): string => `bot.dm:${userId}`;
const pendingKey = (userId: string): string => `bot.pending:${userId}`;

/**
 * The MedMesh verification bot as a real, end-to-end encrypting Matrix client (matrix-js-sdk with Rust crypto),
 * so it can read what users write to it in encrypted direct chats and answer in kind. It is a
 * user of its own, joined only to direct chats: the room-admin bot that is in every room has no
 * device, so no room's keys are ever shared with MedMesh. Its crypto
 * state is in memory: each start replaces the bot's devices with a fresh one (the admin API deletes
 * the old ones), so a message encrypted for the previous device cannot be read and the bot says so.
 */
export async function startBot(d: BotDeps): Promise<Bot> {
  const handled = new Counter({
    name: "medmesh_bot_messages_total",
    help: "Direct messages the bot handled, by outcome (answered, undecryptable, failed)",
    labelNames: ["outcome"],
    registers: [d.metrics],
  });
  await replaceDevices(d);
  const login = await loginAsAppservice(d);
  const client = createClient({
    baseUrl: d.homeserverUrl,
    userId: d.botUserId,
    accessToken: login.access_token,
    deviceId: login.device_id,
    logger: sdkLogger(d.log),
  });
  await client.initRustCrypto({ useIndexedDB: false });
  await client.setDisplayName("MedMesh verification");
  const startedAt = Date.now();

  const send = async (roomId: string, body: string): Promise<void> => {
    await client.sendMessage(roomId, { msgtype: MsgType.Notice, body });
  };

  const isDirectWith = (room: Room, sender: string): boolean => {
    const members = room
      .getJoinedMembers()
      .map((m) => m.userId)
      .filter((u) => !d.ignoredMembers.includes(u));
    return members.length === 2 && members.includes(sender) && members.includes(d.botUserId);
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

  const onEvent = async (event: MatrixEvent, room: Room): Promise<void> => {
    const joined = event.getStateKey();
    if (event.getType() === (EventType.RoomMember as string) && joined && joined !== d.botUserId) {
      if (event.getContent().membership === "join" && event.getTs() >= startedAt)
        await flush(joined, room.roomId);
      return;
    }
    const sender = event.getSender();
    if (!sender || sender === d.botUserId || event.getTs() < startedAt || !isDirectWith(room, sender)) return;
    await client.decryptEventIfNeeded(event);
    if (event.isDecryptionFailure()) {
      handled.inc({ outcome: "undecryptable" });
      await send(
        room.roomId,
        "I could not read your last message (it was encrypted for an earlier session of mine). Please send it again.",
      );
      return;
    }
    if (event.getType() !== (EventType.RoomMessage as string)) return;
    const content = event.getContent<{
      msgtype?: string;
      body?: string;
      url?: string;
      file?: unknown;
      info?: { mimetype?: string; size?: number };
    }>();
    let message: BotMessage | undefined;
    if (content.msgtype === MsgType.Text && typeof content.body === "string") {
      message = { kind: "text", sender, roomId: room.roomId, body: content.body };
    } else if (content.msgtype === MsgType.Image || content.msgtype === MsgType.File) {
      const file = content.file;
      const mxc = isEncryptedFile(file) ? file.url : content.url;
      if (!mxc) return;
      message = {
        kind: "file",
        sender,
        roomId: room.roomId,
        contentType: content.info?.mimetype ?? "application/octet-stream",
        size: content.info?.size ?? 0,
        download: async () => {
          const data = await download(client, mxc, login.access_token);
          return isEncryptedFile(file) ? decryptAttachment(data, file) : data;
        },
      };
    }
    if (!message) return;
    // Where the user talks to the bot is where the bot tells them about later changes.
    if ((await d.documents.get(dmKey(sender))) !== room.roomId)
      await d.documents.put(dmKey(sender), room.roomId);
    const answer = await d.onMessage(message);
    if (answer) await send(room.roomId, answer);
    handled.inc({ outcome: "answered" });
  };

  client.on(RoomEvent.Timeline, (event, room, toStartOfTimeline) => {
    if (toStartOfTimeline || !room) return;
    onEvent(event, room).catch((err: unknown) => {
      handled.inc({ outcome: "failed" });
      d.log.warn({ err, room_id: room.roomId }, "bot could not handle a direct message");
    });
  });
  // Invitations to a direct chat: joining makes the room (and its keys) part of the bot's sync.
  client.on(RoomEvent.MyMembership, (room, membership) => {
    if (membership === "invite")
      client.joinRoom(room.roomId).catch((err: unknown) => {
        d.log.warn({ err, room_id: room.roomId }, "bot could not join");
      });
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
  d.log.info({ device_id: login.device_id }, "bot started with end-to-end encryption");

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
    await d.documents.put(dmKey(userId), roomId);
    return roomId;
  };

  return {
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
    stop() {
      client.stopClient();
    },
  };
}

/** Deletes the bot's earlier devices: their keys died with the process that held them. */
async function replaceDevices(d: BotDeps): Promise<void> {
  const path = `/_synapse/admin/v2/users/${encodeURIComponent(d.botUserId)}`;
  // The bot has no user row (and no devices) until it is first registered.
  const { devices } = await d.admin
    .request<{ devices: { device_id: string }[] }>("GET", `${path}/devices`)
    .catch((err: unknown) => {
      if (err instanceof MatrixRequestError && err.status === 404) return { devices: [] };
      throw err;
    });
  if (devices.length > 0)
    await d.admin.request("POST", `${path}/delete_devices`, { devices: devices.map((x) => x.device_id) });
}

async function loginAsAppservice(d: BotDeps): Promise<{ access_token: string; device_id: string }> {
  await ensureAppserviceUser(d.homeserverUrl, d.asToken, d.botUserId.slice(1, d.botUserId.indexOf(":")));
  const res = await fetch(new URL("/_matrix/client/v3/login", d.homeserverUrl), {
    method: "POST",
    headers: { authorization: `Bearer ${d.asToken}`, "content-type": "application/json" },
    body: JSON.stringify({
      type: "m.login.application_service",
      identifier: { type: "m.id.user", user: d.botUserId },
      initial_device_display_name: "MedMesh bot",
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
