import { randomUUID } from "node:crypto";
import { ApiError } from "@medmesh/common";
import express, { type Request, type Router } from "express";
import type { Logger } from "pino";
import { z } from "zod";
import { EVENTS_PATH, MEDIA_PATH } from "../interop/server.ts";
import { InteropEvent, Registration, type User } from "../interop/types.ts";
import type { Outbox } from "./outbox.ts";
import { applyEvent, conversationExists, isMatrixUserId } from "./state.ts";
import { nowIso, text, type Row, type VendorStore } from "./store.ts";

export interface ApiDeps {
  store: VendorStore;
  outbox: Outbox;
  vendorId: string;
  /** MedMesh's base URL (no trailing slash). */
  medmeshUrl: string;
  log: Logger;
}

const Id = z
  .string()
  .min(1)
  .max(200)
  .regex(/^[A-Za-z0-9._~:@!$&'()*+,;=-]+$/, "letters, digits and URL-safe punctuation");
const LocalUserId = Id.refine((id) => !id.startsWith("@"), "a Matrix user ID cannot be a vendor user");
const Text = z
  .string()
  .min(1)
  .max(64 * 1024);
const MemberId = z.string().min(1).max(255);

const Bodies = {
  user: z.object({
    id: LocalUserId,
    display_name: z.string().min(1).max(255),
    registration: Registration.optional(),
  }),
  conversation: z.object({
    conversation_id: Id.optional(),
    kind: z.enum(["direct", "group"]),
    name: z.string().min(1).max(255).optional(),
    creator: LocalUserId,
    members: z.array(MemberId).min(1).max(1000),
  }),
  message: z.object({ sender: LocalUserId, text: Text, html: Text.optional(), reply_to: Id.optional() }),
  edit: z.object({ sender: LocalUserId, message_id: Id, text: Text, html: Text.optional() }),
  delete: z.object({ sender: LocalUserId, message_id: Id }),
  reaction: z.object({ sender: LocalUserId, message_id: Id, key: z.string().min(1).max(64) }),
  receipt: z.object({ user_id: LocalUserId, message_id: Id, receipt: z.enum(["read", "delivered"]) }),
  member: z.object({ user_id: MemberId, membership: z.enum(["invite", "join", "leave"]) }),
  file: z.object({
    sender: LocalUserId,
    name: z.string().min(1).max(255),
    content_type: z
      .string()
      .regex(/^[\w.+-]+\/[\w.+-]+$/, "a media type such as image/png")
      .max(255),
    data_base64: z.string().min(1),
  }),
  trigger: z.discriminatedUnion("action", [
    z.object({ action: z.literal("send_message"), medmesh_url: z.url({ protocol: /^https?$/ }) }),
    z.object({ action: z.literal("count"), idempotency_key: z.string().min(1).max(255) }),
  ]),
};

/** A request body checked against its schema; the first problem, with its field, is the 400. */
function parse<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const r = schema.safeParse(body ?? {});
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new ApiError("M_BAD_JSON", `${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`);
}

const param = (req: Request, name: string): string => String(req.params[name]);

/**
 * The reference vendor's own REST API (no authentication: a demo and test messenger on loopback).
 * Every change is applied, logged as an `out` event and queued for MedMesh in one transaction.
 */
export function restApi(d: ApiDeps): Router {
  const { store } = d;
  const api = express.Router();
  api.use(express.json({ limit: "32mb" }));

  const user = (id: string): Row | undefined => store.get("SELECT * FROM users WHERE id = ?", id);
  const localUser = (id: string, field: string): Row => {
    const u = user(id);
    if (u?.origin !== "local") throw new ApiError("M_NOT_FOUND", `${field}: no user ${id} (create it first)`);
    return u;
  };
  const profile = (u: Row): User => ({
    id: String(u.id),
    display_name: String(u.display_name),
    ...(u.registry
      ? { registration: { registry: text(u.registry), number: text(u.registration_number) } }
      : {}),
  });
  const conversation = (id: string): void => {
    if (!conversationExists(store, id)) throw new ApiError("M_NOT_FOUND", `No conversation ${id}`);
  };
  /** The user takes part (joined or invited) in the conversation. */
  const member = (conversationId: string, userId: string, field: string): void => {
    localUser(userId, field);
    const m = store.get(
      "SELECT membership FROM members WHERE conversation_id = ? AND user_id = ?",
      conversationId,
      userId,
    );
    if (!m || m.membership === "leave")
      throw new ApiError("M_FORBIDDEN", `${field}: ${userId} is not a member of ${conversationId}`);
  };
  const message = (conversationId: string, messageId: string): Row => {
    const m = store.get(
      "SELECT * FROM messages WHERE conversation_id = ? AND message_id = ?",
      conversationId,
      messageId,
    );
    if (!m) throw new ApiError("M_NOT_FOUND", `message_id: no message ${messageId} in ${conversationId}`);
    return m;
  };
  const newId = (kind: string): string => `${d.vendorId}-${kind}-${randomUUID()}`;
  const conversationRow = (c: Row) => ({
    conversation_id: c.id,
    kind: c.kind,
    ...(c.name ? { name: c.name } : {}),
    creator: c.creator,
    origin: c.origin,
    created_at: c.created_at,
    members: store.all(
      "SELECT user_id, membership FROM members WHERE conversation_id = ? ORDER BY user_id",
      String(c.id),
    ),
  });

  /** Applies one of the vendor's own events and queues it for MedMesh, in one transaction. */
  const send = (event: InteropEvent, extra: { dependsOn?: number } = {}): number => {
    const key = newId("k");
    const checked = InteropEvent.safeParse(event);
    if (!checked.success) {
      const issue = checked.error.issues[0];
      throw new ApiError("M_BAD_JSON", `${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`);
    }
    const body = Buffer.from(JSON.stringify(checked.data));
    applyEvent(store, event, "out", key);
    return d.outbox.enqueue({
      queue: event.conversation_id,
      method: "POST",
      url: `${d.medmeshUrl}${EVENTS_PATH}`,
      idempotencyKey: key,
      contentType: "application/json",
      body,
      description: `${event.type} in ${event.conversation_id}`,
      ...extra,
    });
  };

  api.post("/users", (req, res) => {
    const b = parse(Bodies.user, req.body);
    const existing = user(b.id);
    if (existing && existing.origin !== "local")
      throw new ApiError("M_FORBIDDEN", `id: ${b.id} is a MedMesh user`);
    store.run(
      `INSERT INTO users (id, display_name, registry, registration_number, origin, created_at)
       VALUES (?, ?, ?, ?, 'local', ?)
       ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, registry = excluded.registry,
         registration_number = excluded.registration_number`,
      b.id,
      b.display_name,
      b.registration?.registry ?? null,
      b.registration?.number ?? null,
      nowIso(),
    );
    res.status(existing ? 200 : 201).json({ id: b.id });
  });

  api.get("/users", (_req, res) => {
    res.json({ users: store.all("SELECT * FROM users ORDER BY created_at, id").map(profileRow) });
  });

  api.post("/conversations", (req, res) => {
    const b = parse(Bodies.conversation, req.body);
    const conversationId = b.conversation_id ?? newId("c");
    const members = [...new Set([b.creator, ...b.members])];
    const users = members.map((id) =>
      isMatrixUserId(id) ? undefined : profile(localUser(id, id === b.creator ? "creator" : "members")),
    );
    store.tx(() => {
      send({
        type: "conversation.create",
        conversation_id: conversationId,
        kind: b.kind,
        ...(b.name ? { name: b.name } : {}),
        creator: b.creator,
        members,
        users: users.filter((u) => u !== undefined),
      });
    });
    res.status(201).json({ conversation_id: conversationId });
  });

  api.get("/conversations", (_req, res) => {
    res.json({
      conversations: store.all("SELECT * FROM conversations ORDER BY created_at, id").map(conversationRow),
    });
  });

  api.get("/conversations/:id", (req, res) => {
    const row = store.get("SELECT * FROM conversations WHERE id = ?", param(req, "id"));
    if (!row) throw new ApiError("M_NOT_FOUND", `No conversation ${param(req, "id")}`);
    res.json(conversationRow(row));
  });

  api.get("/conversations/:id/events", (req, res) => {
    const id = param(req, "id");
    conversation(id);
    res.json({
      events: store
        .all("SELECT seq, direction, event, at FROM events WHERE conversation_id = ? ORDER BY seq", id)
        .map((r) => ({
          seq: Number(r.seq),
          direction: r.direction,
          event: JSON.parse(String(r.event)) as unknown,
          received_at: r.at,
        })),
    });
  });

  api.get("/conversations/:id/messages", (req, res) => {
    const id = param(req, "id");
    conversation(id);
    const reactions = store.all(
      "SELECT reaction_id, message_id, sender, key FROM reactions WHERE conversation_id = ? AND deleted = 0",
      id,
    );
    res.json({
      messages: store
        .all(
          `SELECT m.*, f.name AS file_name, f.content_type AS file_type, f.size AS file_size, f.status AS file_status
           FROM messages m LEFT JOIN files f ON f.media_id = m.media_id
           WHERE m.conversation_id = ? ORDER BY m.event_seq`,
          id,
        )
        .map((m) => ({
          message_id: m.message_id,
          direction: m.direction,
          sender: m.sender,
          text: m.deleted ? null : m.text,
          ...(m.html && !m.deleted ? { html: m.html } : {}),
          ...(m.reply_to ? { reply_to: m.reply_to } : {}),
          ...(m.media_id
            ? {
                file: {
                  media_id: m.media_id,
                  name: m.file_name,
                  content_type: m.file_type,
                  size: m.file_size,
                  status: m.file_status,
                },
              }
            : {}),
          edited: m.edited === 1,
          deleted: m.deleted === 1,
          reactions: reactions
            .filter((r) => r.message_id === m.message_id)
            .map((r) => ({ reaction_id: r.reaction_id, sender: r.sender, key: r.key })),
        })),
    });
  });

  api.post("/conversations/:id/messages", (req, res) => {
    const conv = param(req, "id");
    const b = parse(Bodies.message, req.body);
    conversation(conv);
    member(conv, b.sender, "sender");
    if (b.reply_to) message(conv, b.reply_to);
    const messageId = newId("m");
    store.tx(() =>
      send({
        type: "message",
        conversation_id: conv,
        message_id: messageId,
        sender: b.sender,
        text: b.text,
        ...(b.html ? { html: b.html } : {}),
        ...(b.reply_to ? { reply_to: b.reply_to } : {}),
      }),
    );
    res.status(201).json({ message_id: messageId });
  });

  api.post("/conversations/:id/edits", (req, res) => {
    const conv = param(req, "id");
    const b = parse(Bodies.edit, req.body);
    conversation(conv);
    member(conv, b.sender, "sender");
    const m = message(conv, b.message_id);
    if (m.sender !== b.sender)
      throw new ApiError("M_FORBIDDEN", `sender: only ${String(m.sender)} can edit it`);
    if (m.deleted === 1) throw new ApiError("M_FORBIDDEN", "message_id: the message was deleted");
    store.tx(() =>
      send({
        type: "edit",
        conversation_id: conv,
        message_id: b.message_id,
        sender: b.sender,
        text: b.text,
        ...(b.html ? { html: b.html } : {}),
      }),
    );
    res.json({});
  });

  api.post("/conversations/:id/deletes", (req, res) => {
    const conv = param(req, "id");
    const b = parse(Bodies.delete, req.body);
    conversation(conv);
    member(conv, b.sender, "sender");
    const target =
      store.get(
        "SELECT sender, deleted FROM messages WHERE conversation_id = ? AND message_id = ?",
        conv,
        b.message_id,
      ) ??
      store.get(
        "SELECT sender, deleted FROM reactions WHERE conversation_id = ? AND reaction_id = ?",
        conv,
        b.message_id,
      );
    if (!target)
      throw new ApiError("M_NOT_FOUND", `message_id: no message or reaction ${b.message_id} in ${conv}`);
    if (target.sender !== b.sender)
      throw new ApiError("M_FORBIDDEN", `sender: only ${String(target.sender)} can delete it`);
    if (target.deleted === 1) throw new ApiError("M_FORBIDDEN", "message_id: it was deleted already");
    store.tx(() =>
      send({ type: "delete", conversation_id: conv, message_id: b.message_id, sender: b.sender }),
    );
    res.json({});
  });

  api.post("/conversations/:id/reactions", (req, res) => {
    const conv = param(req, "id");
    const b = parse(Bodies.reaction, req.body);
    conversation(conv);
    member(conv, b.sender, "sender");
    message(conv, b.message_id);
    const reactionId = newId("r");
    store.tx(() =>
      send({
        type: "reaction",
        conversation_id: conv,
        message_id: b.message_id,
        sender: b.sender,
        reaction_id: reactionId,
        key: b.key,
      }),
    );
    res.status(201).json({ reaction_id: reactionId });
  });

  api.post("/conversations/:id/receipts", (req, res) => {
    const conv = param(req, "id");
    const b = parse(Bodies.receipt, req.body);
    conversation(conv);
    member(conv, b.user_id, "user_id");
    message(conv, b.message_id);
    store.tx(() =>
      send({
        type: "receipt",
        conversation_id: conv,
        message_id: b.message_id,
        user_id: b.user_id,
        receipt: b.receipt,
      }),
    );
    res.json({});
  });

  api.post("/conversations/:id/members", (req, res) => {
    const conv = param(req, "id");
    const b = parse(Bodies.member, req.body);
    conversation(conv);
    const users = isMatrixUserId(b.user_id) ? [] : [profile(localUser(b.user_id, "user_id"))];
    store.tx(() =>
      send({
        type: "membership",
        conversation_id: conv,
        user_id: b.user_id,
        membership: b.membership,
        ...(users.length > 0 ? { users } : {}),
      }),
    );
    res.json({});
  });

  api.post("/conversations/:id/files", (req, res) => {
    const conv = param(req, "id");
    const b = parse(Bodies.file, req.body);
    conversation(conv);
    member(conv, b.sender, "sender");
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b.data_base64) || b.data_base64.length % 4 !== 0)
      throw new ApiError("M_BAD_JSON", "data_base64: not base64");
    const data = Buffer.from(b.data_base64, "base64");
    if (data.length === 0) throw new ApiError("M_BAD_JSON", "data_base64: the file is empty");
    const mediaId = newId("f");
    const messageId = newId("m");
    store.tx(() => {
      store.run(
        `INSERT INTO files (media_id, conversation_id, direction, name, content_type, size, data, status,
           next_attempt_at, created_at)
         VALUES (?, ?, 'out', ?, ?, ?, ?, 'stored', 0, ?)`,
        mediaId,
        conv,
        b.name,
        b.content_type,
        data.length,
        data,
        nowIso(),
      );
      // The upload first (its Idempotency-Key: the media_id), then the message that names it.
      const upload = d.outbox.enqueue({
        queue: conv,
        method: "PUT",
        url: `${d.medmeshUrl}${MEDIA_PATH}/${mediaId}`,
        idempotencyKey: mediaId,
        contentType: b.content_type,
        body: data,
        description: `file ${mediaId} in ${conv}`,
      });
      send(
        {
          type: "message",
          conversation_id: conv,
          message_id: messageId,
          sender: b.sender,
          text: b.name,
          file: { media_id: mediaId, name: b.name, content_type: b.content_type, size: data.length },
        },
        { dependsOn: upload },
      );
    });
    res.status(201).json({ message_id: messageId, media_id: mediaId });
  });

  api.get("/files/:media_id", (req, res) => {
    const id = param(req, "media_id");
    const f = store.get("SELECT * FROM files WHERE media_id = ?", id);
    if (!f) throw new ApiError("M_NOT_FOUND", `No file ${id}`);
    if (f.status !== "stored" || !(f.data instanceof Uint8Array))
      throw new ApiError(
        "M_NOT_FOUND",
        f.status === "failed"
          ? `The file ${id} could not be downloaded: ${String(f.last_error)}`
          : `The file ${id} is still being downloaded (attempts: ${String(f.attempts)}${f.last_error ? `, last error: ${text(f.last_error)}` : ""})`,
      );
    res
      .status(200)
      .type(String(f.content_type))
      .setHeader("content-disposition", `attachment; filename*=UTF-8''${encodeURIComponent(String(f.name))}`)
      .send(Buffer.from(f.data));
  });

  api.get("/outbox", (_req, res) => {
    res.json(d.outbox.counts());
  });

  api.get("/outbox/items", (req, res) => {
    const status = typeof req.query.status === "string" ? req.query.status : undefined;
    if (status !== undefined && !["pending", "delivered", "failed"].includes(status))
      throw new ApiError("M_INVALID_PARAM", "status: pending, delivered or failed");
    res.json({ items: d.outbox.items(status) });
  });

  /** The conformance kit's trigger contract (bridge/src/conformance/README.md). */
  api.post("/conformance/trigger", (req, res) => {
    const b = parse(Bodies.trigger, req.body);
    if (b.action === "count") {
      const row = store.get(
        "SELECT COUNT(*) AS n FROM events WHERE direction = 'in' AND idempotency_key = ?",
        b.idempotency_key,
      );
      res.json({ applied: Number(row?.n ?? 0) });
      return;
    }
    // A conversation of its own at the kit (not in this vendor's store): a create, then a message.
    const base = b.medmesh_url.replace(/\/+$/, "");
    const conv = newId("conformance");
    const bot = `${d.vendorId}-conformance`;
    const events: InteropEvent[] = [
      {
        type: "conversation.create",
        conversation_id: conv,
        kind: "direct",
        creator: bot,
        members: [bot],
        users: [{ id: bot, display_name: "Conformance check" }],
      },
      {
        type: "message",
        conversation_id: conv,
        message_id: newId("m"),
        sender: bot,
        text: "A message the conformance kit asked for",
      },
    ];
    const keys = events.map(() => newId("k"));
    store.tx(() => {
      events.forEach((event, i) =>
        d.outbox.enqueue({
          queue: conv,
          method: "POST",
          url: `${base}${EVENTS_PATH}`,
          idempotencyKey: keys[i] ?? newId("k"),
          contentType: "application/json",
          body: Buffer.from(JSON.stringify(event)),
          description: `${event.type} for the conformance kit at ${base}`,
          giveUpAt: Date.now() + 10 * 60_000,
        }),
      );
    });
    d.log.info({ medmesh_url: base }, "conformance trigger: sending a message");
    res.status(202).json({ conversation_id: conv, idempotency_keys: keys });
  });

  return api;
}

const profileRow = (u: Row) => ({
  id: u.id,
  display_name: u.display_name,
  origin: u.origin,
  ...(u.registry ? { registration: { registry: u.registry, number: u.registration_number } } : {}),
});
