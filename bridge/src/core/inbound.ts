import type { AuditLog } from "@medmesh/common";
import type { Knex } from "knex";
import type { Logger } from "pino";
import type { InteropEvent, User } from "../interop/types.ts";
import type { Ghosts } from "./ghosts.ts";
import { sanitizeHtml } from "./html.ts";
import type { MatrixSide } from "./matrix.ts";
import { Permanent, type QueueRow } from "./queue.ts";

export interface InboundRow extends QueueRow {
  event: InteropEvent;
}

export const isMatrixUserId = (id: string): boolean => /^@[^:]+:.+$/.test(id);

/** MSC2346 bridge info on every portal the bridge creates. */
export const BRIDGE_STATE = "m.bridge";

export interface InboundDeps {
  knex: Knex;
  ghosts: Ghosts;
  matrix: MatrixSide;
  log: Logger;
  /** The appservice's sender (named as the bridge bot in m.bridge). */
  botUserId: string;
  encryptPortals: boolean;
  audit: AuditLog;
}

/**
 * Vendor → Matrix: carries one accepted interop event into the conversation's portal room, as
 * the sender's ghost, with the event's queue position as the Matrix transaction ID.
 */
export function inboundHandler(d: InboundDeps) {
  const portal = async (vendor: string, conversationId: string) => {
    const row = await d
      .knex("interop_conversations")
      .where({ vendor, conversation_id: conversationId })
      .first<{ room_id: string | null; kind: string } | undefined>("room_id", "kind");
    if (!row?.room_id)
      throw new Permanent(`the conversation ${conversationId} has no room (its creation failed)`);
    return row.room_id;
  };
  const eventOf = async (conversationId: string, messageId: string): Promise<string> => {
    const row = await d
      .knex("bridge_messages")
      .where({ conversation_id: conversationId, message_id: messageId })
      .first<{ event_id: string } | undefined>("event_id");
    if (row) return row.event_id;
    if (messageId.startsWith("$")) return messageId; // a Matrix user's message, by its event ID
    throw new Permanent(`unknown message ${messageId} in ${conversationId}`);
  };
  const profiles = (users: readonly User[] | undefined) => new Map((users ?? []).map((u) => [u.id, u]));
  /** A ghost that is in the room, joining it first when it was invited. */
  const ghostIn = async (
    vendor: string,
    remoteId: string,
    roomId: string,
    profile?: User,
  ): Promise<string> => {
    const ghost = await d.ghosts.ensure(vendor, remoteId, profile);
    const member: unknown = await d.knex("bridge_members").where({ room_id: roomId, user_id: ghost }).first();
    if (!member) {
      await d.matrix.join(ghost, roomId);
      await d.knex("bridge_members").insert({ room_id: roomId, user_id: ghost }).onConflict().ignore();
    }
    return ghost;
  };
  const recordMessage =
    (conversationId: string, messageId: string, roomId: string, eventId: string) =>
    async (trx: Knex.Transaction) => {
      await trx("bridge_messages")
        .insert({
          conversation_id: conversationId,
          message_id: messageId,
          room_id: roomId,
          event_id: eventId,
        })
        .onConflict(["conversation_id", "message_id"])
        .merge();
    };

  return async (row: InboundRow): Promise<((trx: Knex.Transaction) => Promise<void>) | undefined> => {
    const e = row.event;
    const vendor = row.vendor;
    const txnId = `medmesh-in-${String(row.seq)}`;
    switch (e.type) {
      case "conversation.create": {
        const existing = await d
          .knex("interop_conversations")
          .where({ vendor, conversation_id: e.conversation_id })
          .first<{ room_id: string | null } | undefined>("room_id");
        if (existing?.room_id) return undefined; // created before a crash, recorded already
        const byId = profiles(e.users);
        const creator = await d.ghosts.ensure(vendor, e.creator, byId.get(e.creator));
        const remote = e.members.filter((m) => !isMatrixUserId(m) && m !== e.creator);
        const local = e.members.filter(isMatrixUserId);
        const ghosts = await Promise.all(remote.map((m) => d.ghosts.ensure(vendor, m, byId.get(m))));
        const roomId = await findOrCreatePortal(d, {
          vendor,
          conversationId: e.conversation_id,
          creator,
          name: e.name,
          direct: e.kind === "direct",
          invite: [...local, ...ghosts],
        });
        await auditPortal(d.audit, { roomId, vendor, conversationId: e.conversation_id, createdBy: creator });
        await d.knex("bridge_members").insert({ room_id: roomId, user_id: creator }).onConflict().ignore();
        for (const g of ghosts) {
          await d.matrix.join(g, roomId);
          await d.knex("bridge_members").insert({ room_id: roomId, user_id: g }).onConflict().ignore();
        }
        return async (trx) => {
          await trx("interop_conversations")
            .where({ vendor, conversation_id: e.conversation_id })
            .update({ room_id: roomId, ...(e.name ? { name: e.name } : {}) });
        };
      }
      case "membership": {
        const roomId = await portal(vendor, e.conversation_id);
        const creator = await firstGhost(d.knex, roomId);
        if (isMatrixUserId(e.user_id)) {
          if (e.membership !== "invite")
            throw new Permanent(`a vendor can only invite Matrix users, not make them ${e.membership}`);
          await d.matrix.call(
            creator,
            "POST",
            `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/invite`,
            {
              user_id: e.user_id,
            },
          );
          return undefined;
        }
        const ghost = await d.ghosts.ensure(vendor, e.user_id, profiles(e.users).get(e.user_id));
        if (e.membership === "leave") {
          await d.matrix.call(
            ghost,
            "POST",
            `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/leave`,
            {},
          );
          return async (trx) => {
            await trx("bridge_members").where({ room_id: roomId, user_id: ghost }).delete();
          };
        }
        if (ghost !== creator)
          await d.matrix
            .call(creator, "POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/invite`, {
              user_id: ghost,
            })
            .catch((err: unknown) => {
              if (!(err instanceof Permanent && /already in the room|M_FORBIDDEN/.test(err.message)))
                throw err;
            });
        await d.matrix.join(ghost, roomId);
        return async (trx) => {
          await trx("bridge_members").insert({ room_id: roomId, user_id: ghost }).onConflict().ignore();
        };
      }
      case "message": {
        const roomId = await portal(vendor, e.conversation_id);
        const ghost = await ghostIn(vendor, e.sender, roomId);
        const content: Record<string, unknown> = { msgtype: "m.text", body: e.text };
        if (e.html)
          Object.assign(content, { format: "org.matrix.custom.html", formatted_body: sanitizeHtml(e.html) });
        if (e.reply_to)
          content["m.relates_to"] = {
            "m.in_reply_to": { event_id: await eventOf(e.conversation_id, e.reply_to) },
          };
        if (e.file) {
          const media = await d
            .knex("bridge_media")
            .where({ media_id: e.file.media_id, vendor })
            .first<{ data: Buffer | null; content_type: string } | undefined>("data", "content_type");
          if (!media?.data) throw new Permanent(`unknown file ${e.file.media_id}: upload it first`);
          const uploaded = await d.matrix.upload(ghost, roomId, media.data, media.content_type);
          Object.assign(content, uploaded, {
            msgtype: media.content_type.startsWith("image/") ? "m.image" : "m.file",
            body: e.file.name,
            info: { mimetype: media.content_type, size: media.data.length },
          });
        }
        const eventId = await d.matrix.send(ghost, roomId, "m.room.message", content, txnId);
        return recordMessage(e.conversation_id, e.message_id, roomId, eventId);
      }
      case "edit": {
        const roomId = await portal(vendor, e.conversation_id);
        const ghost = await ghostIn(vendor, e.sender, roomId);
        const target = await eventOf(e.conversation_id, e.message_id);
        const fresh: Record<string, unknown> = { msgtype: "m.text", body: e.text };
        if (e.html)
          Object.assign(fresh, { format: "org.matrix.custom.html", formatted_body: sanitizeHtml(e.html) });
        await d.matrix.send(
          ghost,
          roomId,
          "m.room.message",
          {
            msgtype: "m.text",
            body: `* ${e.text}`,
            "m.new_content": fresh,
            "m.relates_to": { rel_type: "m.replace", event_id: target },
          },
          txnId,
        );
        return undefined;
      }
      case "delete": {
        const roomId = await portal(vendor, e.conversation_id);
        const ghost = await ghostIn(vendor, e.sender, roomId);
        await d.matrix.redact(ghost, roomId, await eventOf(e.conversation_id, e.message_id), txnId);
        return undefined;
      }
      case "reaction": {
        const roomId = await portal(vendor, e.conversation_id);
        const ghost = await ghostIn(vendor, e.sender, roomId);
        const eventId = await d.matrix.send(
          ghost,
          roomId,
          "m.reaction",
          {
            "m.relates_to": {
              rel_type: "m.annotation",
              event_id: await eventOf(e.conversation_id, e.message_id),
              key: e.key,
            },
          },
          txnId,
        );
        return recordMessage(e.conversation_id, e.reaction_id, roomId, eventId);
      }
      case "receipt": {
        if (e.receipt !== "read") return undefined; // Matrix has no delivery receipts
        const roomId = await portal(vendor, e.conversation_id);
        const ghost = await ghostIn(vendor, e.user_id, roomId);
        const target = await eventOf(e.conversation_id, e.message_id);
        await d.matrix.call(
          ghost,
          "POST",
          `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/receipt/m.read/${encodeURIComponent(target)}`,
          {},
        );
        return undefined;
      }
    }
  };
}

async function firstGhost(knex: Knex, roomId: string): Promise<string> {
  const row = await knex("bridge_members")
    .where({ room_id: roomId })
    .orderBy("user_id")
    .first<{ user_id: string } | undefined>("user_id");
  if (!row) throw new Permanent(`no ghost is in ${roomId}`);
  return row.user_id;
}

/**
 * Creates the portal room as the conversation creator's ghost — or finds the one created before
 * a crash (room creation has no transaction ID), by its m.bridge state.
 */
async function findOrCreatePortal(
  d: InboundDeps,
  p: {
    vendor: string;
    conversationId: string;
    creator: string;
    name: string | undefined;
    direct: boolean;
    invite: string[];
  },
): Promise<string> {
  const stateKey = `org.medmesh.bridge://${p.vendor}/${p.conversationId}`;
  const { joined_rooms } = await d.matrix.call<{ joined_rooms: string[] }>(
    p.creator,
    "GET",
    "/_matrix/client/v3/joined_rooms",
  );
  for (const roomId of joined_rooms) {
    const found = await d.matrix
      .call(
        p.creator,
        "GET",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/${BRIDGE_STATE}/${encodeURIComponent(stateKey)}`,
      )
      .then(
        () => true,
        () => false,
      );
    if (found) return roomId;
  }
  const bridgeInfo = {
    bridgebot: d.botUserId,
    creator: p.creator,
    protocol: { id: p.vendor, displayname: p.vendor },
    channel: { id: p.conversationId, ...(p.name ? { displayname: p.name } : {}) },
  };
  const { room_id } = await d.matrix.call<{ room_id: string }>(
    p.creator,
    "POST",
    "/_matrix/client/v3/createRoom",
    {
      preset: "private_chat",
      is_direct: p.direct,
      ...(p.name ? { name: p.name } : {}),
      invite: p.invite,
      initial_state: [
        { type: BRIDGE_STATE, state_key: stateKey, content: bridgeInfo },
        { type: "uk.half-shot.bridge", state_key: stateKey, content: bridgeInfo },
        ...(d.encryptPortals
          ? [{ type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } }]
          : []),
      ],
    },
  );
  if (d.encryptPortals) d.matrix.markEncrypted(room_id);
  return room_id;
}

/**
 * The bridge reads and writes a portal's messages in plaintext: each portal is an access point of
 * the bridge host, in the audit log (a crash before the room is recorded as a portal repeats the
 * record rather than lose it).
 */
export async function auditPortal(
  audit: AuditLog,
  p: { roomId: string; vendor: string; conversationId: string; createdBy: string },
): Promise<void> {
  await audit.record({
    actor: p.createdBy,
    action: "bridge.portal",
    object: p.roomId,
    outcome: "bridged",
    details: { vendor: p.vendor, conversation_id: p.conversationId },
  });
}
