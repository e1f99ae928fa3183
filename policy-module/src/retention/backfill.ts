import { MatrixRequestError, type SynapseAdmin } from "@medmesh/common";
import type { Logger } from "pino";
import { indexEntry, stateMediaOf, type RetentionIndex } from "./event-index.ts";

/**
 * Rooms that existed before MedMesh was installed (or that the bot was never invited to) are
 * indexed once through Synapse's admin API, and the room-admin bot is made their admin so the
 * sweep can redact in them. Runs at start, on demand, and for each room the bot joins (so nothing
 * sent before its invite is missed); a room is done once.
 */
export function createBackfill(d: {
  index: RetentionIndex;
  admin: SynapseAdmin;
  botUserId: string;
  log: Logger;
}) {
  const enc = encodeURIComponent;
  /** The number of events indexed, or -1 when the bot cannot act in the room. */
  const indexRoom = async (roomId: string): Promise<number> => {
    const { members } = await d.admin.request<{ members: string[] }>(
      "GET",
      `/_synapse/admin/v1/rooms/${enc(roomId)}/members`,
    );
    if (!members.includes(d.botUserId)) {
      try {
        await d.admin.request("POST", `/_synapse/admin/v1/rooms/${enc(roomId)}/make_room_admin`, {
          user_id: d.botUserId,
        });
      } catch (err) {
        // No local member may grant it (typically a room another organisation created): its own
        // MedMesh redacts there, and Synapse here drops redacted content after
        // redaction_retention_period. Indexing it would only make every sweep fail on it.
        d.log.warn(
          { err, room_id: roomId },
          "the bot cannot be made admin: retention left to the room's home server",
        );
        await d.index.markBackfilled(roomId, new Date());
        return -1;
      }
    }
    let indexed = 0;
    let from: string | undefined;
    for (;;) {
      const q = new URLSearchParams({ dir: "b", limit: "500", ...(from ? { from } : {}) });
      const page = await d.admin.request<{ chunk: Parameters<typeof indexEntry>[0][]; end?: string }>(
        "GET",
        `/_synapse/admin/v1/rooms/${enc(roomId)}/messages?${q.toString()}`,
      );
      for (const e of page.chunk) {
        if (e.state_key !== undefined)
          await d.index.addStateMedia(stateMediaOf(e.content), roomId, e.type, new Date());
        const entry = indexEntry({ ...e, room_id: roomId });
        if (entry) {
          await d.index.add(entry);
          indexed++;
        }
      }
      if (page.chunk.length === 0 || !page.end || page.end === from) break;
      from = page.end;
    }
    await d.index.markBackfilled(roomId, new Date());
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
          const indexed = await indexRoom(room.room_id);
          if (indexed < 0) {
            result.left_to_home_server++;
            continue;
          }
          result.events += indexed;
          result.rooms++;
        } catch (err) {
          if (!(err instanceof MatrixRequestError)) throw err;
          d.log.warn({ err, room_id: room.room_id }, "could not index a room");
        }
      }
      if (page.next_batch === undefined) break;
      from = page.next_batch;
    }
    if (result.rooms > 0) d.log.info(result, "indexed rooms that existed before");
    return result;
  };
  return { all, room: indexRoom };
}
