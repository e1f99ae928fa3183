import type { Request, Router } from "express";
import { EventTimeline, EventType, type MatrixClient, type MatrixEvent, type Room } from "matrix-js-sdk";
import type { DevicePool } from "./devices.ts";
import { DriverError, asyncRoute, badRequest, notFound } from "./errors.ts";
import type { MediaFiles } from "./media.ts";
import { directRecorded, requireRoom, until } from "./rooms.ts";

/**
 * "Delete by replace" (TI-M V3): an edit whose new content carries this marker. The message then
 * disappears from every member's list, as a redacted one does, while the room keeps the event.
 */
export const DELETED_MARKER = "org.medmesh.tim.deleted";

const CONTENT_FIELDS = [
  "body",
  "msgtype",
  "format",
  "formatted_body",
  "filename",
  "info",
  "file",
  "geo_uri",
] as const;

type Content = Record<string, unknown>;
const ROOM_MESSAGE: string = EventType.RoomMessage;

function messageContent(body: unknown, media: MediaFiles): Content {
  const b = (body ?? {}) as Content;
  if (typeof b.body !== "string") throw badRequest("body is required");
  const content: Content = {};
  for (const f of CONTENT_FIELDS) if (b[f] !== undefined) content[f] = b[f];
  content.msgtype = typeof b.msgtype === "string" ? b.msgtype : "m.text";
  if (typeof b.fileId === "string") {
    const file = media.get(b.fileId);
    if (!file) throw notFound(`file ${b.fileId}`);
    content.file = file.file;
    content.info = { mimetype: file.mimetype, size: file.size, ...(b.info as object | undefined) };
    if (content.msgtype === "m.text") content.msgtype = "m.file";
  }
  return content;
}

const lastBackupFetch = new WeakMap<MatrixClient, number>();

/**
 * Messages this device cannot decrypt yet may have keys that another device of the account put
 * in the key backup after this device last looked; fetch the backup again (at most every 2 s).
 */
async function fetchFromBackup(client: MatrixClient): Promise<boolean> {
  const crypto = client.getCrypto();
  if (!crypto || !(await crypto.getActiveSessionBackupVersion())) return false;
  const last = lastBackupFetch.get(client) ?? 0;
  if (Date.now() - last < 2000) return false;
  lastBackupFetch.set(client, Date.now());
  const result = await crypto.restoreKeyBackup().catch(() => undefined);
  return (result?.imported ?? 0) > 0;
}

function isReplacement(e: MatrixEvent): boolean {
  return e.getRelation()?.rel_type === "m.replace";
}

const BACK = EventTimeline.BACKWARDS;

/** The live timeline and the older ones js-sdk has linked behind it, oldest first. */
function chain(room: Room): [EventTimeline, ...EventTimeline[]] {
  const out: [EventTimeline, ...EventTimeline[]] = [room.getLiveTimeline()];
  let t = out[0].getNeighbouringTimeline(BACK);
  while (t && !out.includes(t)) {
    out.unshift(t);
    t = t.getNeighbouringTimeline(BACK);
  }
  return out;
}

/**
 * The room's whole history. A gappy sync during a back-pagination leaves the live timeline linked
 * to the old one that the pagination then filled: paginating the live timeline again only finds
 * events it already has and never ends (seen in CI: 16,548 rounds in 180 s). So the oldest timeline
 * of the chain is paginated, until the server has no more or a round changes nothing.
 */
async function history(client: MatrixClient, room: Room): Promise<MatrixEvent[]> {
  for (;;) {
    const [oldest] = chain(room);
    const [size, token] = [oldest.getEvents().length, oldest.getPaginationToken(BACK)];
    if (!(await client.paginateEventTimeline(oldest, { backwards: true, limit: 250 }))) break;
    const unchanged = oldest.getEvents().length === size && oldest.getPaginationToken(BACK) === token;
    if (unchanged && chain(room)[0] === oldest) break;
  }
  const seen = new Set<string>();
  return chain(room)
    .flatMap((t) => t.getEvents())
    .filter((e) => {
      const id = e.getId() ?? "";
      if (seen.has(id)) return false;
      seen.add(id);
      return true;
    });
}

/** Every visible message of the room: decrypted, the latest edit applied, deleted ones left out. */
export async function listMessages(client: MatrixClient, room: Room, media: MediaFiles) {
  const events = await history(client, room);
  await Promise.all(events.map((e) => client.decryptEventIfNeeded(e)));
  if (events.some((e) => e.isDecryptionFailure()) && (await fetchFromBackup(client))) {
    await Promise.all(
      events
        .filter((e) => e.isDecryptionFailure())
        .map((e) => e.attemptDecryption(client.getCrypto() as never, { isRetry: true })),
    );
  }
  const edits = new Map<string, MatrixEvent>();
  for (const e of events) {
    if (e.getType() !== ROOM_MESSAGE || e.isRedacted() || !isReplacement(e)) continue;
    const target = e.getRelation()?.event_id;
    if (!target) continue;
    const prev = edits.get(target);
    if (!prev || prev.getTs() <= e.getTs()) edits.set(target, e);
  }
  const out = [];
  for (const e of events) {
    if (e.getType() !== ROOM_MESSAGE || e.isRedacted() || isReplacement(e)) continue;
    const id = e.getId();
    if (!id) continue;
    const edit = edits.get(id);
    // Only the sender's own edits count (the spec tells clients to ignore others').
    const applied = edit && edit.getSender() === e.getSender() ? edit : undefined;
    const content = applied
      ? (applied.getContent<{ "m.new_content"?: Content }>()["m.new_content"] ?? {})
      : e.getOriginalContent<Content>();
    if (content[DELETED_MARKER] === true) continue;
    out.push(toMessage(e, content, applied, media));
  }
  return out;
}

function toMessage(e: MatrixEvent, content: Content, edit: MatrixEvent | undefined, media: MediaFiles) {
  const picked: Content = {};
  for (const f of CONTENT_FIELDS) if (content[f] !== undefined) picked[f] = content[f];
  const fileId = media.remember(content.file, content.info);
  return {
    ...picked,
    body: typeof content.body === "string" ? content.body : "",
    msgtype: typeof content.msgtype === "string" ? content.msgtype : "m.text",
    ...(fileId ? { fileId } : {}),
    event_id: e.getId() ?? "",
    messageId: e.getId() ?? "",
    type: e.getType(),
    author: e.getSender() ?? "",
    room_id: e.getRoomId() ?? "",
    origin_server_ts: e.getTs(),
    timestamp: new Date(e.getTs()).toISOString(),
    ...(edit ? { lastUpdated: new Date(edit.getTs()).toISOString() } : {}),
  };
}

async function sendAndShow(
  client: MatrixClient,
  room: Room,
  content: Content,
  media: MediaFiles,
  target?: string,
) {
  const { event_id } = await client.sendMessage(room.roomId, content as never);
  const shown = target ?? event_id;
  const list = await until(
    () => room.findEventById(event_id) ?? undefined,
    `the sent message ${event_id} in the timeline`,
  ).then(() => listMessages(client, room, media));
  const message = list.find((m) => m.messageId === shown);
  if (!message) throw new DriverError(500, "NOT_VISIBLE", `message ${shown} is not in the room's list`);
  return message;
}

const param = (req: Request, name: string): string => String(req.params[name]);

export function mountMessages(router: Router, pool: DevicePool, media: MediaFiles): void {
  const session = (req: Request) => pool.use(param(req, "deviceId")).requireSession();

  router.get(
    "/devices/:deviceId/rooms/:roomId/messages",
    asyncRoute(async (req, res) => {
      const { client } = session(req);
      res.json(await listMessages(client, requireRoom(client, param(req, "roomId")), media));
    }),
  );

  router.post(
    "/devices/:deviceId/rooms/:roomId/messages",
    asyncRoute(async (req, res) => {
      const { client } = session(req);
      const room = requireRoom(client, param(req, "roomId"));
      res.json(await sendAndShow(client, room, messageContent(req.body, media), media));
    }),
  );

  const findOwn = async (client: MatrixClient, room: Room, id: string) => {
    const message = (await listMessages(client, room, media)).find((m) => m.messageId === id);
    if (!message) throw notFound(`message ${id}`);
    if (message.author !== client.getUserId())
      throw new DriverError(403, "NOT_AUTHOR", "only the author of a message can change it");
    return message;
  };

  router.get(
    "/devices/:deviceId/rooms/:roomId/messages/:messageId",
    asyncRoute(async (req, res) => {
      const { client } = session(req);
      const id = param(req, "messageId");
      const message = (await listMessages(client, requireRoom(client, param(req, "roomId")), media)).find(
        (m) => m.messageId === id,
      );
      if (!message) throw notFound(`message ${id}`);
      res.json(message);
    }),
  );

  router.put(
    "/devices/:deviceId/rooms/:roomId/messages/:messageId",
    asyncRoute(async (req, res) => {
      const { client } = session(req);
      const room = requireRoom(client, param(req, "roomId"));
      const id = param(req, "messageId");
      await findOwn(client, room, id);
      const next = messageContent(req.body, media);
      const edit = {
        ...next,
        body: `* ${String(next.body)}`,
        "m.new_content": next,
        "m.relates_to": { rel_type: "m.replace", event_id: id },
      };
      res.json(await sendAndShow(client, room, edit, media, id));
    }),
  );

  router.delete(
    "/devices/:deviceId/rooms/:roomId/messages/:messageId",
    asyncRoute(async (req, res) => {
      const { client } = session(req);
      const room = requireRoom(client, param(req, "roomId"));
      const id = param(req, "messageId");
      await findOwn(client, room, id);
      await client.redactEvent(room.roomId, id);
      res.status(204).end();
    }),
  );

  router.delete(
    "/devices/:deviceId/rooms/:roomId/messages/:messageId/replace",
    asyncRoute(async (req, res) => {
      const { client } = session(req);
      const room = requireRoom(client, param(req, "roomId"));
      const id = param(req, "messageId");
      await findOwn(client, room, id);
      const gone = { msgtype: "m.text", body: "This message was deleted.", [DELETED_MARKER]: true };
      await client.sendMessage(room.roomId, {
        ...gone,
        body: "* This message was deleted.",
        "m.new_content": gone,
        "m.relates_to": { rel_type: "m.replace", event_id: id },
      } as never);
      res.status(204).end();
    }),
  );

  // One direct room per pair: the m.direct entry of a room both are in (or invited to), else a new one.
  router.post(
    "/devices/:deviceId/sendMessage",
    asyncRoute(async (req, res) => {
      const device = pool.use(param(req, "deviceId"));
      const { client } = device.requireSession();
      const to = (req.body as { toAccount?: unknown } | undefined)?.toAccount;
      if (typeof to !== "string" || !to.startsWith("@"))
        throw badRequest("toAccount must be a Matrix user ID");
      const content = messageContent(req.body, media);
      const room = await device.serial(() => directRoom(client, to));
      res.json(await sendAndShow(client, room, content, media));
    }),
  );
}

async function directRoom(client: MatrixClient, to: string): Promise<Room> {
  const direct: Record<string, string[]> =
    client.getAccountData(EventType.Direct)?.getContent<Record<string, string[]>>() ?? {};
  for (const roomId of direct[to] ?? []) {
    const room = client.getRoom(roomId);
    const theirs = room?.getMember(to)?.membership;
    if (room?.getMyMembership() === "join" && (theirs === "join" || theirs === "invite")) return room;
  }
  const { room_id } = await client.createRoom({
    is_direct: true,
    // Not trusted_private_chat: for room version 12 Synapse then refuses the room (invitees as creators).
    preset: "private_chat" as never,
    invite: [to],
    initial_state: [
      { type: EventType.RoomEncryption, state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
    ] as never,
  });
  await client.setAccountData(EventType.Direct, {
    ...direct,
    [to]: [...(direct[to] ?? []), room_id],
  });
  await directRecorded(client, to, room_id);
  return until(() => {
    const room = client.getRoom(room_id);
    return room?.getMyMembership() === "join" && room.getMember(to) ? room : undefined;
  }, `the direct room ${room_id}`);
}
