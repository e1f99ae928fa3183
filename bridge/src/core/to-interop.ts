import { createHash } from "node:crypto";
import { RETENTION_REDACTION } from "@medmesh/common";
import type { InteropEvent } from "../interop/types.ts";
import type { BridgeStore, Portal } from "../store/index.ts";
import type { Ghosts } from "./ghosts.ts";

/** A Matrix event as the bridge reads it (decrypted when it was encrypted). */
export interface ClearEvent {
  type: string;
  event_id: string;
  sender: string;
  room_id: string;
  content: Record<string, unknown>;
  redacts?: string;
  state_key?: string;
}

const relatesTo = (content: Record<string, unknown>) =>
  content["m.relates_to"] as
    | { rel_type?: string; event_id?: string; key?: string; "m.in_reply_to"?: { event_id?: string } }
    | undefined;

/** Strips the reply fallback (`> <@x> …` lines) Matrix clients put in front of a reply. */
const withoutReplyFallback = (body: string): string => body.replace(/^(> .*\n)+\n?/, "");

/** The event a redaction removes, if `e` is one. */
export const redactedBy = (e: ClearEvent): string | undefined =>
  e.type === "m.room.redaction"
    ? (e.redacts ?? (typeof e.content.redacts === "string" ? e.content.redacts : undefined))
    : undefined;

/** The file ID a Matrix event's attachment has at the vendor: one per event. */
export const matrixMediaId = (eventId: string): string =>
  `mx-${createHash("sha256").update(eventId).digest("hex").slice(0, 32)}`;

/**
 * Matrix → interop: the interop event for a (decrypted) Matrix event of a portal, or undefined
 * when there is nothing to carry. A file a Matrix user sends is named for the vendor here (the
 * bridge keeps where it is and its key, never its bytes).
 */
export function matrixToInterop(d: { store: BridgeStore; ghosts: Ghosts }) {
  /** The vendor's ID for a Matrix event: its own message ID if it came from the vendor. */
  const messageIdOf = async (conversationId: string, eventId: string): Promise<string> =>
    (await d.store.messages.messageIdOf(conversationId, eventId)) ?? eventId;

  const toInterop = async (portal: Portal, e: ClearEvent): Promise<InteropEvent | undefined> => {
    const conversation_id = portal.conversation_id;
    const rel = relatesTo(e.content);
    if (e.type === "m.room.message") {
      const body = typeof e.content.body === "string" ? e.content.body : "";
      const html =
        e.content.format === "org.matrix.custom.html" && typeof e.content.formatted_body === "string"
          ? e.content.formatted_body.replace(/^<mx-reply>[\s\S]*?<\/mx-reply>/, "")
          : undefined;
      if (rel?.rel_type === "m.replace" && rel.event_id) {
        const fresh = (e.content["m.new_content"] ?? {}) as Record<string, unknown>;
        const text = typeof fresh.body === "string" ? fresh.body : body.replace(/^\* /, "");
        return {
          type: "edit",
          conversation_id,
          message_id: await messageIdOf(conversation_id, rel.event_id),
          sender: e.sender,
          text: text || " ",
          ...(typeof fresh.formatted_body === "string" ? { html: fresh.formatted_body } : {}),
        };
      }
      const url = typeof e.content.url === "string" ? e.content.url : undefined;
      const file = e.content.file as { url?: string } | undefined;
      const info = (e.content.info ?? {}) as { mimetype?: string; size?: number };
      let attachment: Extract<InteropEvent, { type: "message" }>["file"];
      const mxc = url ?? file?.url;
      if (mxc) {
        // One file per Matrix event, so recording the event again adds no second row.
        const media_id = matrixMediaId(e.event_id);
        await d.store.media.recordMatrixFile({
          media_id,
          vendor: portal.vendor,
          content_type: info.mimetype ?? "application/octet-stream",
          mxc,
          file: file ?? null,
          event_id: e.event_id,
        });
        attachment = {
          media_id,
          name: body || "file",
          content_type: info.mimetype ?? "application/octet-stream",
          size: info.size && info.size > 0 ? info.size : 1,
        };
      }
      const replyTo = rel?.["m.in_reply_to"]?.event_id;
      return {
        type: "message",
        conversation_id,
        message_id: e.event_id,
        sender: e.sender,
        text: (replyTo ? withoutReplyFallback(body) : body) || " ",
        ...(html ? { html } : {}),
        ...(replyTo ? { reply_to: await messageIdOf(conversation_id, replyTo) } : {}),
        ...(attachment ? { file: attachment } : {}),
      };
    }
    if (e.type === "m.reaction" && rel?.rel_type === "m.annotation" && rel.event_id && rel.key)
      return {
        type: "reaction",
        conversation_id,
        message_id: await messageIdOf(conversation_id, rel.event_id),
        sender: e.sender,
        reaction_id: e.event_id,
        key: rel.key.slice(0, 64),
      };
    const redacts = redactedBy(e);
    if (redacts)
      return {
        type: "delete",
        conversation_id,
        message_id: await messageIdOf(conversation_id, redacts),
        sender: e.sender,
        ...(e.content[RETENTION_REDACTION] === true ? { reason: "retention" as const } : {}),
      };
    if (e.type === "m.room.member" && e.state_key && !d.ghosts.isGhost(e.state_key)) {
      const membership = e.content.membership;
      if (membership === "join" || membership === "leave" || membership === "invite")
        return { type: "membership", conversation_id, user_id: e.state_key, membership };
    }
    return undefined;
  };
  return { toInterop, messageIdOf };
}
export type MatrixToInterop = ReturnType<typeof matrixToInterop>;
