import {
  freshSyncFilter,
  refreshTrackedDevices,
  LeadershipLost,
  type DocumentStore,
  type Leader,
  type SynapseAdmin,
} from "@medmesh/common";
import {
  ClientEvent,
  createClient,
  EventType,
  Filter,
  MatrixEvent,
  MsgType,
  RoomEvent,
  SyncState,
  type MatrixClient,
} from "matrix-js-sdk";
import type { Knex } from "knex";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import { loadBotDeviceState, needsSnapshotBefore } from "./device-state.ts";
import { botMessage } from "./messages.ts";
import { createBotInbox, type InboxEntry } from "./inbox.ts";
import { botRooms, createBotOutbox } from "./outbox.ts";
import {
  deleteOtherDevices,
  download,
  loginAsAppservice,
  sdkLogger,
  sendOnce,
  txnIdFor,
  waitForRoom,
} from "./session.ts";

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
  store: { knex: Knex; documents: DocumentStore };
  /**
   * The bots' lease (BOTS_JOB, bot/host.ts): a replica that lost it sends nothing more from the
   * device and writes no snapshot over its successor's.
   */
  leader: Leader;
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
  /** Tells a local user something in their direct chat with the bot (queued in its outbox; created, encrypted, when missing). */
  tell(userId: string, text: string): Promise<void>;
  /** Its inbox or outbox has new rows (recorded by any replica, bot/host.ts): handle them now. */
  wake(): void;
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
/** Notices not delivered in this time are given up. */
const OUTBOX_DAYS = 7;

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
 * transactions (which Synapse retries while the service is down), through a durable inbox that any
 * replica fills (bot/host.ts), not from the client's live timeline; the client's /sync only carries
 * keys and room state. It runs on one replica at a time, the leader of BOTS_JOB.
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
  const { knex, documents } = d.store;
  // The snapshot is written only while this replica holds the bots' lease (in the same transaction).
  const state = await loadBotDeviceState(documents, d.botUserId, (name, value) =>
    knex.transaction(async (trx) => {
      await d.leader.fence(trx);
      await trx("documents")
        .insert({ name, value, updated_at: new Date() })
        .onConflict("name")
        .merge(["value", "updated_at"]);
    }),
  );
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
      // A bot whose replica lost the lease is being stopped: its successor has the device now.
      if (!d.leader.isLeader()) throw new LeadershipLost(d.leader.job);
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
  const send = async (roomId: string, body: string, key: string): Promise<void> => {
    await waitForRoom(client, roomId);
    await sendOnce(client, roomId, { msgtype: MsgType.Notice, body }, txnIdFor(key));
  };

  const outbox = createBotOutbox(knex, d.botUserId);
  const roomsTable = botRooms(knex);
  /**
   * Notices for a user wait in the outbox until they joined their direct chat: a message
   * encrypted before they join would not be shared with their devices.
   */
  const flush = async (userId: string, roomId: string): Promise<void> => {
    if ((await documents.get(dmKey(userId))) !== roomId) return;
    if (client.getRoom(roomId)?.getMember(userId)?.membership !== "join") {
      // Their join may be in the transactions but not in this client's sync yet: the inbox has it.
      const { joined } = await client.getJoinedRoomMembers(roomId);
      if (!(userId in joined)) return;
    }
    for (const n of await outbox.waiting(userId)) {
      await send(roomId, n.text, `outbox:${String(n.seq)}`);
      await outbox.sent(n.seq);
    }
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
    if ((await documents.get(dmKey(sender))) !== raw.room_id) await documents.put(dmKey(sender), raw.room_id);
    const answer = await d.onMessage(message);
    if (answer) await send(raw.room_id, answer, raw.event_id);
    handled.inc({ outcome: "answered" });
  };

  const inbox = createBotInbox(knex, d.botUserId);
  // Which events are the bot's is decided by any replica from this table (bot/recorder.ts).
  await roomsTable.replace(d.botUserId, (await client.getJoinedRooms()).joined_rooms);
  const failures = new Map<string, number>();
  /** Users the bot could not open a direct chat with: when to try again. */
  const backoff = new Map<string, { ms: number; until: number }>();
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
        // Notices queued (on any replica) for users in their direct chat now; a user the bot cannot
        // open a chat with (their invite settings) is tried again later, and given up after a week.
        if (!isStopped() && (await outbox.prune(Date.now() - OUTBOX_DAYS * 86_400_000)) > 0)
          d.log.warn({ days: OUTBOX_DAYS }, "notices older than this were given up");
        for (const userId of isStopped() ? [] : await outbox.users()) {
          const wait = backoff.get(userId);
          if (wait && wait.until > Date.now()) continue;
          await roomFor(userId).then(
            async (roomId) => {
              backoff.delete(userId);
              await flush(userId, roomId);
            },
            (err: unknown) => {
              const ms = Math.min((wait?.ms ?? 15_000) * 2, 3_600_000);
              backoff.set(userId, { ms, until: Date.now() + ms });
              d.log.warn({ err, user_id: userId, retry_ms: ms }, "the bot could not open a direct chat");
            },
          );
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
        () => roomsTable.joined(d.botUserId, room.roomId),
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
    // Never the cached answer to the previous leader's (or run's) initial sync (freshSyncFilter).
    const filter = new Filter(d.botUserId);
    filter.setDefinition(freshSyncFilter());
    void client.startClient({ initialSyncLimit: 1, lazyLoadMembers: true, filter });
  });
  if (state.restored === login.device_id) await refreshTrackedDevices(client.getCrypto());
  d.log.info(
    { device_id: login.device_id, restored: state.restored === login.device_id },
    "bot started with end-to-end encryption",
  );
  const roomFor = async (userId: string): Promise<string> => {
    const known = await documents.get(dmKey(userId));
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
    await roomsTable.joined(d.botUserId, roomId);
    await documents.put(dmKey(userId), roomId);
    return roomId;
  };
  drain(); // what an earlier run (here or on another replica) stored but did not finish

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
      if (key) return sendOnce(client, roomId, message, txnIdFor(key));
      return (await client.sendMessage(roomId, message)).event_id;
    },
    async tell(userId, text) {
      await outbox.queue(userId, text);
      drain();
    },
    wake: drain,
    stop() {
      stopped = true;
      client.stopClient();
    },
  };
}
