import { MatrixRequestError, type AppserviceEvent, type AsUser } from "@medmesh/common";
import type { Logger } from "pino";
import { serverOf } from "../proxy/policy.ts";
import type { GroupsStore } from "./groups-store.ts";
import { GROUP_EVENT, GroupListingSchema } from "./listing.ts";

const HOMES_CACHED = 10_000;
const WATCHED = new Set([GROUP_EVENT, "m.room.join_rules", "m.room.name", "m.room.topic"]);

/**
 * Keeps the directory's table equal to the rooms' current state at Synapse: a change of one of
 * the watched state events (or a membership change in a listed room) re-reads the room as the
 * room-admin bot. Reading rather than applying the event: a late or caught-up event can never
 * undo a newer one.
 */
export function createGroupIndexer(d: {
  groups: GroupsStore;
  bot: AsUser;
  botUserId: string;
  serverName: string;
  log: Logger;
}) {
  const state = async (roomId: string, type: string): Promise<Record<string, unknown> | undefined> => {
    try {
      return await d.bot(
        "GET",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/${encodeURIComponent(type)}/`,
      );
    } catch (err) {
      if (err instanceof MatrixRequestError && err.status === 404) return undefined;
      throw err;
    }
  };
  const text = (v: unknown): string | undefined => (typeof v === "string" && v.trim() ? v : undefined);

  /** Each room's creating server (it never changes): asked of Synapse once per room. */
  const homes = new Map<string, string>();
  const homeOf = async (roomId: string): Promise<string> => {
    const known = homes.get(roomId);
    if (known !== undefined) return known;
    const create = await d.bot<{ sender?: string }>(
      "GET",
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.create/?format=event`,
    );
    const home = serverOf(create.sender ?? "") ?? "";
    // Bounded: the oldest entry goes first (Map keeps insertion order).
    if (homes.size >= HOMES_CACHED) homes.delete(homes.keys().next().value ?? "");
    homes.set(roomId, home);
    return home;
  };

  const refresh = async (roomId: string): Promise<void> => {
    // Only this organisation's rooms are its groups: a room of another organisation the bot was
    // invited into is that organisation's to list (its rules come from this server's copy of it).
    if ((await homeOf(roomId)) !== d.serverName) {
      await d.groups.remove(roomId);
      return;
    }
    const parsed = GroupListingSchema.safeParse((await state(roomId, GROUP_EVENT)) ?? {});
    // A room of this organisation without a (valid) listing is kept as one: known, not a group.
    const listing = parsed.success
      ? parsed.data
      : { listed: false, scope: "organisation" as const, professions: [] };
    const [joinRules, name, topic, members] = await Promise.all([
      state(roomId, "m.room.join_rules"),
      state(roomId, "m.room.name"),
      state(roomId, "m.room.topic"),
      d.bot<{ joined?: Record<string, unknown> }>(
        "GET",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/joined_members`,
      ),
    ]);
    await d.groups.put({
      room_id: roomId,
      ...listing,
      name: text(name?.name),
      topic: text(topic?.topic),
      join_rule: text(joinRules?.join_rule),
      members: Object.keys(members.joined ?? {}).length,
    });
  };

  return {
    refresh,
    onEvents: async (events: readonly AppserviceEvent[]): Promise<void> => {
      const rooms = new Set<string>();
      for (const e of events) {
        if (!e.room_id || e.state_key === undefined) continue;
        // The bot joins after a room's first state was set: its own join reads the room.
        if (WATCHED.has(e.type) || (e.type === "m.room.member" && e.state_key === d.botUserId))
          rooms.add(e.room_id);
        else if (e.type === "m.room.member" && (await d.groups.get(e.room_id))?.listed) rooms.add(e.room_id);
      }
      for (const roomId of rooms) {
        try {
          await refresh(roomId);
        } catch (err) {
          // Other errors (Synapse unreachable) fail the transaction: Synapse sends it again.
          if (!(err instanceof MatrixRequestError && err.status === 403)) throw err;
          // The bot is no longer in the room: the directory cannot vouch for it.
          d.log.info({ room_id: roomId }, "the room-admin bot cannot read a room; not listed");
          await d.groups.remove(roomId);
        }
      }
    },
  };
}
