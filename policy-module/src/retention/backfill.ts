import { MatrixRequestError, roomStateOf, type SynapseAdmin } from "@medmesh/common";
import type { Logger } from "pino";
import { indexEntry, stateMediaOf, type RetentionIndex } from "./event-index.ts";
import { RETENTION_EVENT } from "./config.ts";

type Page = {
  chunk: (Parameters<typeof indexEntry>[0] & { state_key?: string })[];
  start?: string;
  end?: string;
};

/**
 * Rooms that existed before MedMesh was installed (or that the bot was never invited to) are
 * indexed once through Synapse's admin API, and the room-admin bot is made their admin so the
 * sweep can redact in them. Runs at start, on demand, before each sweep, and for each room the
 * bot joins (so nothing sent before its invite is missed); a room is done once. A room no local
 * member may make the bot admin of (another organisation administers it) is "foreign": its home
 * organisation redacts there, and this one forgets its own copy — its history is read on from
 * where it stopped before every sweep, with its pins and its period.
 */
export function createBackfill(d: {
  index: RetentionIndex;
  admin: SynapseAdmin;
  botUserId: string;
  /** The organisation's bounds for a room's period: a foreign room's own is clamped into them. */
  bounds: { minMs: number; maxMs: number };
  log: Logger;
}) {
  const enc = encodeURIComponent;
  const page = (roomId: string, dir: "b" | "f", from: string | undefined) =>
    d.admin.request<Page>(
      "GET",
      `/_synapse/admin/v1/rooms/${enc(roomId)}/messages?${new URLSearchParams({ dir, limit: "500", ...(from ? { from } : {}) }).toString()}`,
    );
  const indexPage = async (roomId: string, chunk: Page["chunk"]): Promise<number> => {
    let indexed = 0;
    for (const e of chunk) {
      if (e.state_key !== undefined)
        await d.index.addStateMedia(stateMediaOf(e.content), roomId, e.type, new Date());
      const entry = indexEntry({ ...e, room_id: roomId });
      if (entry) {
        await d.index.add(entry);
        indexed++;
      }
    }
    return indexed;
  };

  /** Whether the bot is (or could be made) admin; false when another organisation's is. */
  const canAdminister = async (roomId: string): Promise<boolean> => {
    const { members } = await d.admin.request<{ members: string[] }>(
      "GET",
      `/_synapse/admin/v1/rooms/${enc(roomId)}/members`,
    );
    if (members.includes(d.botUserId)) return true;
    try {
      await d.admin.request("POST", `/_synapse/admin/v1/rooms/${enc(roomId)}/make_room_admin`, {
        user_id: d.botUserId,
      });
      return true;
    } catch (err) {
      d.log.info(
        { err, room_id: roomId },
        "another organisation administers this room: only our copy is forgotten",
      );
      return false;
    }
  };

  /** A foreign room's pins and period, from its current state. */
  const readState = async (roomId: string): Promise<void> => {
    const state = await roomStateOf(d.admin, roomId, ["m.room.pinned_events", RETENTION_EVENT]);
    const of = (type: string) => state.get(type);
    const pins = of("m.room.pinned_events");
    const pinned = new Set(
      Array.isArray(pins?.content.pinned) ? pins.content.pinned.filter((p) => typeof p === "string") : [],
    );
    const before = await d.index.pins(roomId);
    for (const eventId of pinned)
      if (!before.has(eventId)) await d.index.keep(roomId, eventId, pins?.sender ?? "", new Date());
    for (const eventId of before.keys()) if (!pinned.has(eventId)) await d.index.unkeep(roomId, eventId);
    const ms = of(RETENTION_EVENT)?.content.max_lifetime;
    await d.index.setRoomPeriod(
      roomId,
      typeof ms === "number" ? Math.min(d.bounds.maxMs, Math.max(d.bounds.minMs, ms)) : null,
    );
  };

  /** The number of events indexed, and whether the room is foreign. */
  const indexRoom = async (roomId: string): Promise<{ indexed: number; foreign: boolean }> => {
    const foreign = !(await canAdminister(roomId));
    let indexed = 0;
    let from: string | undefined;
    let now: string | undefined; // where reading on starts next time (foreign rooms)
    for (;;) {
      const p = await page(roomId, "b", from);
      now ??= p.start;
      indexed += await indexPage(roomId, p.chunk);
      if (p.chunk.length === 0 || !p.end || p.end === from) break;
      from = p.end;
    }
    if (foreign) {
      await d.index.markForeign(roomId, now, new Date());
      await readState(roomId);
    } else await d.index.markBackfilled(roomId, new Date());
    return { indexed, foreign };
  };

  /** Foreign rooms: their history read on from where it stopped, then their pins and period. */
  const refreshForeign = async (): Promise<number> => {
    let indexed = 0;
    for (const room of await d.index.foreignRooms()) {
      try {
        let from = room.from ?? undefined;
        for (;;) {
          const p = await page(room.room_id, "f", from);
          indexed += await indexPage(room.room_id, p.chunk);
          if (p.chunk.length === 0 || !p.end || p.end === from) break;
          from = p.end;
          await d.index.setForeignFrom(room.room_id, from);
        }
        await readState(room.room_id);
      } catch (err) {
        if (!(err instanceof MatrixRequestError)) throw err;
        d.log.warn({ err, room_id: room.room_id }, "could not read a foreign room");
      }
    }
    return indexed;
  };

  /** Every room with local members that was not indexed yet. */
  const all = async (): Promise<{ rooms: number; events: number; left_to_home_server: number }> => {
    const result = { rooms: 0, events: 0, left_to_home_server: 0 };
    let from = 0;
    for (;;) {
      const page = await d.admin.request<{
        rooms: { room_id: string; joined_local_members: number }[];
        next_batch?: number;
      }>("GET", `/_synapse/admin/v1/rooms?from=${String(from)}&limit=100`);
      for (const room of page.rooms) {
        if (room.joined_local_members === 0 || (await d.index.isBackfilled(room.room_id))) continue;
        try {
          const { indexed, foreign } = await indexRoom(room.room_id);
          result.events += indexed;
          if (foreign) result.left_to_home_server++;
          else result.rooms++;
        } catch (err) {
          if (!(err instanceof MatrixRequestError)) throw err;
          d.log.warn({ err, room_id: room.room_id }, "could not index a room");
        }
      }
      if (page.next_batch === undefined) break;
      from = page.next_batch;
    }
    if (result.rooms + result.left_to_home_server > 0)
      d.log.info(result, "indexed rooms that existed before");
    return result;
  };
  return { all, room: async (roomId: string) => (await indexRoom(roomId)).indexed, refreshForeign };
}
