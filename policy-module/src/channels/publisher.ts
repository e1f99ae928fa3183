import { createHash } from "node:crypto";
import { MatrixEvent, MatrixEventEvent, MsgType, RoomEvent, type MatrixClient } from "matrix-js-sdk";
import type { Logger } from "pino";
import type { ChannelsStore } from "./store.ts";
import { PUBLISHER_LEVEL, URGENT_KEY, type ChannelSpec } from "./spec.ts";

/** Longer than the bot's sync ever lags behind its own request. */
const SYNC_LAG_MS = 30_000;

export interface Membership {
  user_id: string;
  membership: string;
  /** Who set it (a leave by the user themselves, or a kick by someone else). */
  sender: string;
}

export interface PostStats {
  event_id: string;
  urgent: boolean;
  members: number;
  read: { count: number; users: string[] };
  acknowledged: { count: number; users: string[] };
}

/**
 * The channels' publisher: MedMesh's channel bot, an end-to-end encrypting client (bot/), creates
 * the rooms, invites, posts for the console and reads receipts and reactions. It is the only
 * MedMesh account that holds a channel's room keys.
 */
export function createPublisher(d: {
  /** The channel bot's client, started on first use (an organisation without channels runs no bot). */
  client: () => Promise<MatrixClient>;
  botUserId: string;
  /** The room-admin bot (no device): in every room, it redacts expired posts (retention) and badges members. */
  roomAdminBotUserId: string;
  channels: ChannelsStore;
  log: Logger;
}) {
  let listening: MatrixClient | undefined;
  const clientNow = async (): Promise<MatrixClient> => {
    const client = await d.client();
    if (listening !== client) {
      listening = client;
      client.on(RoomEvent.Timeline, (event) => {
        if (event.isBeingDecrypted() || event.isEncrypted()) {
          event.once(MatrixEventEvent.Decrypted, (e) => {
            recordIfUrgent(e);
          });
        } else recordIfUrgent(event);
      });
    }
    return client;
  };

  /** Urgent posts a publisher sent from their own client are recorded too, once the bot decrypted them. */
  const recordIfUrgent = (event: MatrixEvent): void => {
    const roomId = event.getRoomId();
    const id = event.getId();
    if (!roomId || !id || event.getType() !== "m.room.message" || event.getSender() === d.botUserId) return;
    if (event.getContent()[URGENT_KEY] === undefined) return;
    void (async () => {
      if (!(await d.channels.get(roomId))) return;
      await d.channels.addPost({
        event_id: id,
        room_id: roomId,
        sender: event.getSender() ?? "",
        urgent: true,
        sent_at: new Date(event.getTs()),
      });
    })().catch((err: unknown) => {
      d.log.warn({ err, room_id: roomId, event_id: id }, "could not record an urgent post");
    });
  };
  /**
   * Per room, the memberships the bot set that its own sync may not show yet, and when. One not
   * shown after SYNC_LAG_MS is dropped (the member changed it again meanwhile, e.g. rejected the
   * invite), so no post waits for it twice.
   */
  type Expected = { membership: "invite" | "leave"; at: number };
  const changed = new Map<string, Map<string, Expected>>();
  const expect = (roomId: string, userId: string, membership: Expected["membership"]): void => {
    const room = changed.get(roomId) ?? new Map<string, Expected>();
    changed.set(roomId, room.set(userId, { membership, at: Date.now() }));
  };
  const waitForRoom = async (client: MatrixClient, roomId: string): Promise<void> => {
    for (let i = 0; i < 100 && !client.getRoom(roomId)?.hasEncryptionStateEvent(); i++)
      await new Promise((r) => setTimeout(r, 100));
    if (!client.getRoom(roomId)?.hasEncryptionStateEvent())
      throw new Error(`the channel bot's sync has no encrypted room ${roomId}`);
  };

  return {
    async createRoom(spec: ChannelSpec): Promise<string> {
      const client = await clientNow();
      // The bot creates the room: its creator (room version 12 gives creators unlimited power and
      // refuses them in `users`; in older versions createRoom gives the creator 100 itself).
      const users: Record<string, number> = { [d.roomAdminBotUserId]: 100 };
      for (const p of spec.publishers) users[p] = PUBLISHER_LEVEL;
      const { room_id } = await client.createRoom({
        name: spec.name,
        ...(spec.topic ? { topic: spec.topic } : {}),
        preset: "private_chat" as never,
        invite: [d.roomAdminBotUserId],
        initial_state: [
          { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
          // Invited members' devices get the room keys of what is posted after their invite.
          { type: "m.room.history_visibility", state_key: "", content: { history_visibility: "invited" } },
        ],
        power_level_content_override: {
          users,
          users_default: 0,
          // Only publishers post (any event, encrypted or not); members acknowledge with a reaction
          // (kept in the clear by Matrix clients) and may retract their own.
          events_default: PUBLISHER_LEVEL,
          events: {
            "m.reaction": 0,
            "m.room.redaction": 0,
            "m.room.power_levels": 100,
            "m.room.encryption": 100,
            "m.room.name": PUBLISHER_LEVEL,
            "m.room.topic": PUBLISHER_LEVEL,
          },
          state_default: 100,
          invite: 100,
          kick: 100,
          ban: 100,
          redact: PUBLISHER_LEVEL,
        },
      });
      await waitForRoom(client, room_id);
      return room_id;
    },

    /** Posts encrypted; the transaction ID comes from the caller's key, so a retry sends nothing new. */
    async post(roomId: string, body: string, urgent: boolean, key: string): Promise<string> {
      const client = await clientNow();
      await waitForRoom(client, roomId);
      await client.getRoom(roomId)?.loadMembersIfNeeded();
      // The room key goes to the members the bot's sync knows: wait until it shows the invites and
      // removals the bot itself just made (a member invited a moment ago would miss the key, one
      // removed would get it). Only those, not the whole member list: a post costs the same at
      // 30 members as at 3,000.
      const waiting = changed.get(roomId);
      for (let i = 0; waiting && i < 50; i++) {
        const room = client.getRoom(roomId);
        for (const [userId, want] of waiting) {
          const now = room?.getMember(userId)?.membership;
          const shown =
            now === "invite" || now === "join" ? want.membership === "invite" : want.membership === "leave";
          if (shown || Date.now() - want.at > SYNC_LAG_MS) waiting.delete(userId);
        }
        if (waiting.size === 0) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      if (waiting?.size === 0) changed.delete(roomId);
      const content = {
        msgtype: MsgType.Text,
        body: urgent ? `URGENT: ${body}` : body,
        ...(urgent ? { [URGENT_KEY]: { kind: "recall" } } : {}),
      };
      const txnId = `mmch-${createHash("sha256").update(key).digest("base64url").slice(0, 24)}`;
      const { event_id } = await client.sendEvent(roomId, "m.room.message" as never, content as never, txnId);
      return event_id;
    },

    /** Every membership the room's state holds (Synapse's answer, not the bot's lazy copy). */
    async members(roomId: string): Promise<Membership[]> {
      const { chunk = [] } = await (await clientNow()).members(roomId);
      return chunk.map((e) => ({
        user_id: e.state_key,
        membership: String((e.content as { membership?: unknown }).membership),
        sender: e.sender,
      }));
    },

    async invite(roomId: string, userId: string, reason?: string): Promise<void> {
      await (await clientNow()).invite(roomId, userId, reason);
      expect(roomId, userId, "invite");
    },
    async kick(roomId: string, userId: string, reason: string): Promise<void> {
      await (await clientNow()).kick(roomId, userId, reason);
      expect(roomId, userId, "leave");
    },

    /** Who of the channel's members (publishers and the bot aside) read the post and who reacted to it. */
    async stats(roomId: string, eventId: string, publishers: readonly string[]): Promise<PostStats> {
      const client = await clientNow();
      const room = client.getRoom(roomId);
      if (!room) throw new Error(`the channel bot is not in ${roomId}`);
      const skip = new Set([d.botUserId, d.roomAdminBotUserId, ...publishers]);
      const joined = (await this.members(roomId))
        .filter((m) => m.membership === "join" && !skip.has(m.user_id))
        .map((m) => m.user_id);
      // The post must be in the bot's timeline to order receipts against it: after a restart, page back.
      const timeline = room.getLiveTimeline();
      for (let i = 0; i < 20 && !room.findEventById(eventId); i++) {
        if (!(await client.paginateEventTimeline(timeline, { backwards: true, limit: 100 }))) break;
      }
      const read = joined.filter((u) => room.hasUserReadEvent(u, eventId));
      const reactors = new Set<string>();
      let from: string | undefined;
      do {
        const page = await client.relations(roomId, eventId, "m.annotation", null, {
          ...(from ? { from } : {}),
        });
        for (const e of page.events) reactors.add(e.getSender() ?? "");
        from = page.nextBatch ?? undefined;
      } while (from);
      const acknowledged = joined.filter((u) => reactors.has(u));
      const post = await d.channels.post(eventId);
      return {
        event_id: eventId,
        urgent: post?.urgent ?? false,
        members: joined.length,
        read: { count: read.length, users: read.sort() },
        acknowledged: { count: acknowledged.length, users: acknowledged.sort() },
      };
    },
  };
}
export type Publisher = ReturnType<typeof createPublisher>;
