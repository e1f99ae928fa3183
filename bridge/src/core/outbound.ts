import { createHash, randomBytes, type KeyObject } from "node:crypto";
import { RETENTION_REDACTION, type AppserviceEvent, type AuditLog } from "@medmesh/common";
import type { Knex } from "knex";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { InteropConfig } from "../interop/config.ts";
import { REQUIRED_COMPONENTS } from "../interop/server.ts";
import { contentDigest, signRequest } from "../interop/signatures.ts";
import type { InteropEvent, WebhookEvent } from "../interop/types.ts";
import type { BridgeCrypto } from "./crypto.ts";
import type { Ghosts } from "./ghosts.ts";
import { auditPortal } from "./inbound.ts";
import type { MatrixSide } from "./matrix.ts";
import { Permanent, type QueueRow } from "./queue.ts";

const UNDECRYPTABLE_AFTER_MS = 120_000;

export interface OutboundRow extends QueueRow {
  created_at: Date | string;
  idempotency_key: string;
  event: WebhookEvent | null;
  encrypted: (AppserviceEvent & Record<string, unknown>) | null;
}

interface Portal {
  vendor: string;
  conversation_id: string;
  room_id: string;
}

interface ClearEvent {
  type: string;
  event_id: string;
  sender: string;
  room_id: string;
  content: Record<string, unknown>;
  redacts?: string;
  state_key?: string;
}

export interface OutboundDeps {
  knex: Knex;
  ghosts: Ghosts;
  crypto: BridgeCrypto;
  matrix: MatrixSide;
  log: Logger;
  config: InteropConfig;
  signingKey: { keyId: string; privateKey: KeyObject };
  botUserId: string;
  audit: AuditLog;
  metrics: Registry;
}

const relatesTo = (content: Record<string, unknown>) =>
  content["m.relates_to"] as
    | { rel_type?: string; event_id?: string; key?: string; "m.in_reply_to"?: { event_id?: string } }
    | undefined;

/** Strips the reply fallback (`> <@x> …` lines) Matrix clients put in front of a reply. */
const withoutReplyFallback = (body: string): string => body.replace(/^(> .*\n)+\n?/, "");

/**
 * Matrix → vendor. `record` turns each transaction event in a portal into an interop event and
 * stores it in the delivery queue (keyed by Matrix event ID, so a transaction Synapse sends again
 * adds nothing) before the transaction is acknowledged; `deliver` signs and posts one queued
 * event to the vendor's webhook.
 */
export function outbound(d: OutboundDeps) {
  const vendors = new Map(d.config.vendors.map((v) => [v.id, v]));
  const portalOf = (roomId: string) =>
    d
      .knex("interop_conversations")
      .where({ room_id: roomId })
      .first<Portal | undefined>("vendor", "conversation_id", "room_id");
  const roomGhosts = async (roomId: string) =>
    (await d.knex("bridge_members").where({ room_id: roomId }).select<{ user_id: string }[]>("user_id")).map(
      (r) => r.user_id,
    );
  /** The vendor's ID for a Matrix event: its own message ID if it came from the vendor. */
  const messageIdOf = async (conversationId: string, eventId: string): Promise<string> => {
    const row = await d
      .knex("bridge_messages")
      .where({ conversation_id: conversationId, event_id: eventId })
      .first<{ message_id: string } | undefined>("message_id");
    return row?.message_id ?? eventId;
  };
  const userIdOf = async (userId: string): Promise<string> =>
    (await d.ghosts.remoteOf(userId))?.remoteId ?? userId;

  const enqueue = async (
    portal: Portal,
    key: string,
    fields: { event?: WebhookEvent; encrypted?: unknown; at?: Date },
    trx: Knex | Knex.Transaction = d.knex,
  ): Promise<boolean> => {
    const added = await trx("bridge_outbound")
      .insert({
        vendor: portal.vendor,
        conversation_id: portal.conversation_id,
        idempotency_key: key,
        event: fields.event ? JSON.stringify(fields.event) : null,
        encrypted: fields.encrypted ? JSON.stringify(fields.encrypted) : null,
        next_attempt_at: new Date(),
        created_at: fields.at ?? new Date(),
      })
      .onConflict("idempotency_key")
      .ignore()
      .returning("seq");
    return added.length > 0;
  };

  /** The interop event for a (decrypted) Matrix event, or undefined when there is nothing to carry. */
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
      if (url ?? file?.url) {
        // One file per Matrix event, so recording the event again adds no second row.
        const media_id = `mx-${createHash("sha256").update(e.event_id).digest("hex").slice(0, 32)}`;
        await d
          .knex("bridge_media")
          .insert({
            media_id,
            vendor: portal.vendor,
            content_type: info.mimetype ?? "application/octet-stream",
            mxc: url ?? file?.url,
            file: file ? JSON.stringify(file) : null,
            created_at: new Date(),
          })
          .onConflict("media_id")
          .ignore();
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
    const redacts = e.redacts ?? (typeof e.content.redacts === "string" ? e.content.redacts : undefined);
    if (e.type === "m.room.redaction" && redacts)
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

  /** A Matrix user invited a ghost: the ghost joins; a room that is no portal yet becomes one. */
  const onGhostInvited = async (e: AppserviceEvent & { content?: Record<string, unknown> }) => {
    const ghost = e.state_key ?? "";
    const remote = await d.ghosts.remoteOf(ghost);
    const roomId = e.room_id;
    if (!remote || !roomId || !e.sender) return;
    await d.matrix.join(ghost, roomId);
    await d.knex("bridge_members").insert({ room_id: roomId, user_id: ghost }).onConflict().ignore();
    const existing = await portalOf(roomId);
    if (existing) {
      await enqueue(existing, `mx-${e.event_id ?? ""}`, {
        event: {
          type: "membership",
          conversation_id: existing.conversation_id,
          user_id: remote.remoteId,
          membership: "join",
        },
      });
      return;
    }
    const members = await Promise.all((await d.matrix.members(ghost, roomId)).map(userIdOf));
    const portal: Portal = { vendor: remote.vendor, conversation_id: roomId, room_id: roomId };
    const kind = e.content?.is_direct === true ? "direct" : "group";
    await d.knex.transaction(async (trx) => {
      await trx("interop_conversations")
        .insert({
          vendor: remote.vendor,
          conversation_id: roomId,
          kind,
          room_id: roomId,
          created_at: new Date(),
        })
        .onConflict(["vendor", "conversation_id"])
        .ignore();
      await enqueue(
        portal,
        `mx-${e.event_id ?? roomId}`,
        {
          event: {
            type: "conversation.create",
            conversation_id: roomId,
            kind,
            creator: e.sender ?? "",
            members,
          },
        },
        trx,
      );
    });
    await auditPortal(d.audit, {
      roomId,
      vendor: remote.vendor,
      conversationId: roomId,
      createdBy: e.sender ?? "",
    });
  };

  type RawEvent = AppserviceEvent & {
    content?: Record<string, unknown>;
    redacts?: string;
    unsigned?: { age?: number };
  };
  /**
   * One Matrix event of a portal into the delivery queue (nothing for what the vendor is not
   * sent; a repeat adds nothing, events are keyed by ID). True when it added a row.
   */
  const recordEvent = async (
    portal: Portal,
    raw: RawEvent & { room_id: string; event_id: string },
    at: Date,
  ): Promise<boolean> => {
    const key = `mx-${raw.event_id}`;
    let clear: RawEvent = { content: {}, ...raw };
    if (raw.type === "m.room.encrypted") {
      const decrypted = await d.crypto
        .decrypt(raw.room_id, raw, await roomGhosts(raw.room_id))
        .catch(() => undefined);
      // Decrypted when its key arrives.
      if (!decrypted) return enqueue(portal, key, { encrypted: raw, at });
      clear = { ...raw, ...decrypted };
    }
    const event = await toInterop(portal, clear as ClearEvent);
    return event ? enqueue(portal, key, { event, at }) : false;
  };

  const isEcho = (e: RawEvent) =>
    !e.sender ||
    d.ghosts.isGhost(e.sender) ||
    e.sender === d.botUserId ||
    (e.type === "m.room.member" && !!e.state_key && d.ghosts.isGhost(e.state_key));

  const record = async (
    events: readonly AppserviceEvent[],
    transaction: Readonly<Record<string, unknown>>,
  ): Promise<void> => {
    // Rows carry the moment Synapse handed the transaction over (latency is measured from there).
    const at = new Date();
    for (const raw of events as RawEvent[]) {
      if (!raw.room_id || !raw.event_id || !raw.sender) continue;
      if (raw.type === "m.room.member") d.matrix.membershipChanged(raw.room_id);
      if (raw.type === "m.room.member" && raw.state_key && d.ghosts.isGhost(raw.state_key)) {
        if (raw.content?.membership === "invite" && !d.ghosts.isGhost(raw.sender)) await onGhostInvited(raw);
        continue;
      }
      if (isEcho(raw)) continue;
      const portal = await portalOf(raw.room_id);
      if (!portal) continue;
      await recordEvent(portal, { ...raw, room_id: raw.room_id, event_id: raw.event_id }, at);
    }
    const ephemeral = (transaction.ephemeral ?? transaction["de.sorunome.msc2409.ephemeral"] ?? []) as {
      type?: string;
      room_id?: string;
      content?: Record<string, Record<string, Record<string, unknown>>>;
    }[];
    for (const r of ephemeral) {
      if (r.type !== "m.receipt" || !r.room_id || !r.content) continue;
      const portal = await portalOf(r.room_id);
      if (!portal) continue;
      for (const [eventId, receipts] of Object.entries(r.content))
        for (const userId of Object.keys(receipts["m.read"] ?? {})) {
          if (d.ghosts.isGhost(userId)) continue;
          await enqueue(portal, `mx-read-${eventId}-${userId}`, {
            event: {
              type: "receipt",
              conversation_id: portal.conversation_id,
              message_id: await messageIdOf(portal.conversation_id, eventId),
              user_id: userId,
              receipt: "read",
            },
          });
        }
    }
  };

  const deliver = async (
    row: OutboundRow,
  ): Promise<((trx: Knex.Transaction) => Promise<void>) | undefined> => {
    const vendor = vendors.get(row.vendor);
    if (!vendor) throw new Permanent(`the vendor ${row.vendor} is no longer configured`);
    let event = row.event;
    if (!event && row.encrypted) {
      const raw = row.encrypted;
      const roomId = raw.room_id ?? "";
      const clear = await d.crypto.decrypt(roomId, raw, await roomGhosts(roomId)).catch((err: unknown) => {
        const why = err instanceof Error ? err.message : String(err);
        // A key normally follows its message within seconds; one that does not come holds back
        // its conversation only this long.
        if (Date.now() - new Date(row.created_at).getTime() > UNDECRYPTABLE_AFTER_MS)
          throw new Permanent(`the bridge could not decrypt it (${why}); please send it again`);
        throw new Error(`waiting for the room key to decrypt it (${why})`);
      });
      const portal = await portalOf(roomId);
      if (!portal) throw new Permanent("the room is no longer a portal");
      event = (await toInterop(portal, { ...raw, ...clear } as ClearEvent)) ?? null;
      if (!event) return undefined;
      await d
        .knex("bridge_outbound")
        .where({ seq: row.seq })
        .update({ event: JSON.stringify(event), encrypted: null });
    }
    if (!event) return undefined;
    const body = Buffer.from(JSON.stringify(event));
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "content-digest": contentDigest(body),
      "idempotency-key": row.idempotency_key,
    };
    Object.assign(
      headers,
      signRequest(
        { method: "POST", url: vendor.webhook_url, headers, body },
        {
          keyId: d.signingKey.keyId,
          privateKey: d.signingKey.privateKey,
          components: REQUIRED_COMPONENTS,
          nonce: randomBytes(16).toString("base64url"),
        },
      ),
    );
    let res: Response;
    try {
      res = await fetch(vendor.webhook_url, {
        method: "POST",
        headers,
        body,
        signal: AbortSignal.timeout(d.config.delivery.timeout_ms),
      });
    } catch (err) {
      const cause = (err as Error).cause;
      throw new Error(
        `the messenger is unreachable: ${cause instanceof Error ? cause.message : (err as Error).message}`,
        { cause: err },
      );
    }
    const text = await res.text().catch(() => "");
    if (res.ok) return undefined;
    const reason = `the messenger answered ${String(res.status)} ${text.slice(0, 300)}`;
    if (res.status === 408 || res.status === 429 || res.status >= 500) throw new Error(reason);
    throw new Permanent(reason);
  };

  /** The Matrix user hears, in the portal, that something did not reach the other messenger. */
  const notifyUndelivered = async (row: OutboundRow, reason: string) => {
    const portal = await d
      .knex("interop_conversations")
      .where({ vendor: row.vendor, conversation_id: row.conversation_id })
      .first<{ room_id: string | null } | undefined>("room_id");
    const ghost = portal?.room_id ? (await roomGhosts(portal.room_id))[0] : undefined;
    if (!portal?.room_id || !ghost) return;
    await d.matrix.send(
      ghost,
      portal.room_id,
      "m.room.message",
      {
        msgtype: "m.notice",
        body: `⚠ Not delivered to ${row.vendor}: ${reason}`,
        "org.medmesh.bridge.undelivered": { idempotency_key: row.idempotency_key },
      },
      `medmesh-undelivered-${String(row.seq)}`,
    );
  };

  /** The vendor hears that an event it sent could not be carried into Matrix, and why. */
  const tellVendor = async (row: QueueRow, reason: string) => {
    const request = await d
      .knex("interop_requests")
      .where({ vendor: row.vendor })
      .whereRaw("(response->>'event_seq')::bigint = ?", [Number(row.seq)])
      .first<{ idempotency_key: string } | undefined>("idempotency_key");
    await enqueue(
      { vendor: row.vendor, conversation_id: row.conversation_id, room_id: "" },
      `undelivered-${String(row.seq)}`,
      {
        event: {
          type: "undelivered",
          conversation_id: row.conversation_id,
          event_seq: Number(row.seq),
          idempotency_key: request?.idempotency_key ?? "unknown",
          reason: reason.slice(0, 2000),
        },
      },
    );
  };

  return { record, deliver, notifyUndelivered, tellVendor };
}
