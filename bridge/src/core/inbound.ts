import type { AuditLog } from "@medmesh/common";
import type { Logger } from "pino";
import type { User } from "../interop/types.ts";
import type { Removed } from "../lifecycle/index.ts";
import type { BridgeStore, Completion, InboundRow } from "../store/index.ts";
import type { Ghosts } from "./ghosts.ts";
import { sanitizeHtml } from "./html.ts";
import type { MatrixSide } from "./matrix.ts";
import { Permanent } from "./queue.ts";

export type { InboundRow } from "../store/index.ts";

export const isMatrixUserId = (id: string): boolean => /^@[^:]+:.+$/.test(id);

/** MSC2346 bridge info on every portal the bridge creates. */
export const BRIDGE_STATE = "m.bridge";

export interface InboundDeps {
  store: BridgeStore;
  ghosts: Ghosts;
  matrix: MatrixSide;
  log: Logger;
  /** The appservice's sender (named as the bridge bot in m.bridge). */
  botUserId: string;
  encryptPortals: boolean;
  audit: AuditLog;
  removed: Removed;
}

/**
 * Vendor → Matrix: carries one accepted interop event into the conversation's portal room, as
 * the sender's ghost, with the event's queue position as the Matrix transaction ID.
 */
export function inboundHandler(d: InboundDeps) {
  const { portals, messages, media } = d.store;
  const portal = async (vendor: string, conversationId: string) => {
    const row = await portals.conversation(vendor, conversationId);
    if (!row?.room_id)
      throw new Permanent(`the conversation ${conversationId} has no room (its creation failed)`);
    return row.room_id;
  };
  /** The Matrix event of a message, or undefined if there is none (never sent, or expired). */
  const knownEvent = async (conversationId: string, messageId: string): Promise<string | undefined> =>
    // A Matrix user's message, by its event ID.
    (await messages.eventOf(conversationId, messageId)) ??
    (messageId.startsWith("$") ? messageId : undefined);
  const eventOf = async (conversationId: string, messageId: string): Promise<string> => {
    const eventId = await knownEvent(conversationId, messageId);
    if (eventId) return eventId;
    throw new Permanent(`unknown message ${messageId} in ${conversationId} (never sent, or expired)`);
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
    if (!(await portals.isMember(roomId, ghost))) {
      await d.matrix.join(ghost, roomId);
      await portals.addMember(roomId, ghost);
    }
    return ghost;
  };
  const recordMessage =
    (conversationId: string, messageId: string, roomId: string, eventId: string): Completion =>
    (trx) =>
      messages.record(trx, {
        conversation_id: conversationId,
        message_id: messageId,
        room_id: roomId,
        event_id: eventId,
      });
  /**
   * A vendor's file as a Matrix attachment: uploaded once (then its bytes go, and a retry or a
   * second message with the same file reuses the upload).
   */
  const attachment = async (vendor: string, ghost: string, roomId: string, mediaId: string) => {
    const file = await media.get(mediaId, vendor);
    if (!file || (!file.data && !file.mxc)) throw new Permanent(`unknown file ${mediaId}: upload it first`);
    const size = Number(file.size ?? file.data?.length ?? 0);
    if (file.mxc) return { content: file.file ? { file: file.file } : { url: file.mxc }, file, size };
    if (!file.data) throw new Permanent(`unknown file ${mediaId}: upload it first`);
    const uploaded = await d.matrix.upload(ghost, roomId, file.data, file.content_type);
    const mxc = "file" in uploaded ? String(uploaded.file.url) : uploaded.url;
    await media.uploaded(mediaId, { mxc, file: "file" in uploaded ? uploaded.file : null });
    d.removed.inc({ what: "media_bytes", why: "uploaded" });
    return { content: uploaded, file, size };
  };

  return async (row: InboundRow): Promise<Completion | undefined> => {
    const e = row.event;
    if (!e) return undefined; // nothing left to carry
    const vendor = row.vendor;
    const txnId = `medmesh-in-${String(row.seq)}`;
    switch (e.type) {
      case "conversation.create": {
        const existing = await portals.conversation(vendor, e.conversation_id);
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
        await portals.addMember(roomId, creator);
        for (const g of ghosts) {
          await d.matrix.join(g, roomId);
          await portals.addMember(roomId, g);
        }
        return (trx) => portals.setRoom(trx, vendor, e.conversation_id, roomId, e.name);
      }
      case "membership": {
        const roomId = await portal(vendor, e.conversation_id);
        const creator = await portals.firstGhost(roomId);
        if (!creator) throw new Permanent(`no ghost is in ${roomId}`);
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
          return (trx) => portals.removeMember(trx, roomId, ghost);
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
        return (trx) => portals.addMember(roomId, ghost, trx);
      }
      case "message": {
        const roomId = await portal(vendor, e.conversation_id);
        const ghost = await ghostIn(vendor, e.sender, roomId);
        const content: Record<string, unknown> = { msgtype: "m.text", body: e.text };
        if (e.html)
          Object.assign(content, { format: "org.matrix.custom.html", formatted_body: sanitizeHtml(e.html) });
        // A reply to a message that has expired (or never reached Matrix) arrives as a message.
        const replyTo = e.reply_to ? await knownEvent(e.conversation_id, e.reply_to) : undefined;
        if (replyTo) content["m.relates_to"] = { "m.in_reply_to": { event_id: replyTo } };
        const file = e.file ? await attachment(vendor, ghost, roomId, e.file.media_id) : undefined;
        if (e.file && file)
          Object.assign(content, file.content, {
            msgtype: file.file.content_type.startsWith("image/") ? "m.image" : "m.file",
            body: e.file.name,
            info: { mimetype: file.file.content_type, size: file.size },
          });
        const eventId = await d.matrix.send(ghost, roomId, "m.room.message", content, txnId);
        const mapped = recordMessage(e.conversation_id, e.message_id, roomId, eventId);
        if (!file) return mapped;
        const mediaId = file.file.media_id;
        return async (trx) => {
          await mapped(trx);
          await media.carriedBy(trx, mediaId, eventId);
        };
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
        const target = await eventOf(e.conversation_id, e.message_id);
        await d.matrix.redact(ghost, roomId, target, txnId);
        // The vendor deleted it: the file it carried goes too (the bridge hears no echo of its own redaction).
        const files = await media.forgetEvent(target);
        if (files) d.removed.inc({ what: "media_rows", why: "redaction" }, files);
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
