import { ApiError } from "@medmesh/common";
import type { User, WebhookEvent } from "../interop/types.ts";
import { nowIso, type VendorStore } from "./store.ts";

export type Direction = "in" | "out";

/** Matrix user IDs are MedMesh's; everything else in a conversation is a vendor user ID. */
export const isMatrixUserId = (id: string): boolean => /^@[^:]+:.+$/.test(id);

/** Profiles of MedMesh's side: added, never overwriting one of the vendor's own users. */
function rememberUsers(store: VendorStore, users: readonly User[] | undefined, ids: readonly string[]): void {
  for (const u of users ?? [])
    store.run(
      `INSERT INTO users (id, display_name, registry, registration_number, origin, created_at)
       VALUES (?, ?, ?, ?, 'medmesh', ?)
       ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, registry = excluded.registry,
         registration_number = excluded.registration_number
       WHERE users.origin = 'medmesh'`,
      u.id,
      u.display_name,
      u.registration?.registry ?? null,
      u.registration?.number ?? null,
      nowIso(),
    );
  for (const id of ids)
    if (isMatrixUserId(id))
      store.run(
        `INSERT INTO users (id, display_name, origin, created_at) VALUES (?, ?, 'medmesh', ?)
         ON CONFLICT (id) DO NOTHING`,
        id,
        id,
        nowIso(),
      );
}

function setMembership(store: VendorStore, conversationId: string, userId: string, membership: string): void {
  store.run(
    `INSERT INTO members (conversation_id, user_id, membership) VALUES (?, ?, ?)
     ON CONFLICT (conversation_id, user_id) DO UPDATE SET membership = excluded.membership`,
    conversationId,
    userId,
    membership,
  );
}

export const conversationExists = (store: VendorStore, id: string): boolean =>
  store.get("SELECT 1 AS x FROM conversations WHERE id = ?", id) !== undefined;

/**
 * Applies one event to the store — a received one (`in`, from the webhook) or one of the vendor's
 * own (`out`, before it is queued for MedMesh) — and appends it to the conversation's event log.
 * Runs inside the caller's transaction; throws an ApiError (nothing applied) for an event that
 * cannot be: a conversation created twice (403), or one that was never created (404).
 */
export function applyEvent(
  store: VendorStore,
  event: WebhookEvent,
  direction: Direction,
  idempotencyKey: string | undefined,
): number {
  const conv = event.conversation_id;
  if (event.type === "conversation.create") {
    if (conversationExists(store, conv))
      throw new ApiError("M_FORBIDDEN", `The conversation ${conv} exists already`);
    store.run(
      "INSERT INTO conversations (id, kind, name, creator, origin, created_at) VALUES (?, ?, ?, ?, ?, ?)",
      conv,
      event.kind,
      event.name ?? null,
      event.creator,
      direction === "in" ? "medmesh" : "local",
      nowIso(),
    );
    if (direction === "in") rememberUsers(store, event.users, [event.creator, ...event.members]);
    for (const member of new Set([event.creator, ...event.members]))
      setMembership(store, conv, member, "join");
  } else if (!conversationExists(store, conv)) {
    throw new ApiError("M_NOT_FOUND", `No conversation ${conv}: it must be created first`);
  }
  const { lastInsertRowid: seq } = store.run(
    "INSERT INTO events (conversation_id, direction, type, event, idempotency_key, at) VALUES (?, ?, ?, ?, ?, ?)",
    conv,
    direction,
    event.type,
    JSON.stringify(event),
    idempotencyKey ?? null,
    nowIso(),
  );
  switch (event.type) {
    case "conversation.create":
      break;
    case "membership":
      if (direction === "in") rememberUsers(store, event.users, [event.user_id]);
      setMembership(store, conv, event.user_id, event.membership);
      break;
    case "message":
      store.run(
        `INSERT INTO messages (conversation_id, message_id, direction, sender, text, html, reply_to, media_id, event_seq)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (conversation_id, message_id) DO NOTHING`,
        conv,
        event.message_id,
        direction,
        event.sender,
        event.text,
        event.html ?? null,
        event.reply_to ?? null,
        event.file?.media_id ?? null,
        seq,
      );
      if (direction === "in") {
        rememberUsers(store, undefined, [event.sender]);
        if (event.file)
          store.run(
            `INSERT INTO files (media_id, conversation_id, direction, name, content_type, size, status, next_attempt_at,
               created_at)
             VALUES (?, ?, 'in', ?, ?, ?, 'pending', ?, ?) ON CONFLICT (media_id) DO NOTHING`,
            event.file.media_id,
            conv,
            event.file.name,
            event.file.content_type,
            event.file.size,
            Date.now(),
            nowIso(),
          );
      }
      break;
    case "edit":
      store.run(
        "UPDATE messages SET text = ?, html = ?, edited = 1 WHERE conversation_id = ? AND message_id = ?",
        event.text,
        event.html ?? null,
        conv,
        event.message_id,
      );
      break;
    case "delete":
      // MedMesh carries the redaction of a reaction as a delete of the reaction's ID.
      store.run(
        "UPDATE messages SET deleted = 1 WHERE conversation_id = ? AND message_id = ?",
        conv,
        event.message_id,
      );
      store.run(
        "UPDATE reactions SET deleted = 1 WHERE conversation_id = ? AND reaction_id = ?",
        conv,
        event.message_id,
      );
      break;
    case "reaction":
      store.run(
        `INSERT INTO reactions (conversation_id, reaction_id, message_id, sender, key) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (conversation_id, reaction_id) DO NOTHING`,
        conv,
        event.reaction_id,
        event.message_id,
        event.sender,
        event.key,
      );
      break;
    case "receipt":
      break;
  }
  return seq;
}
