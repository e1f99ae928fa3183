import {
  asUser,
  MatrixRequestError,
  roomStateOf,
  type AppserviceEvent,
  type SynapseAdmin,
} from "@medmesh/common";
import type { Knex } from "knex";
import type { Logger } from "pino";
import type { PeerClient } from "../directory/index.ts";
import { groupsStore, type GroupEntry } from "./groups-store.ts";
import { createGroupIndexer } from "./indexer.ts";
import { GROUP_EVENT, GroupListingSchema } from "./listing.ts";
import { createModeration } from "./moderation.ts";
import { createGroupRoutes } from "./routes.ts";
import { createGroupRules } from "./rules.ts";

export { GROUPS_MIGRATIONS } from "./migrations.ts";
export { checkListing, GROUP_EVENT } from "./listing.ts";
export { groupConsoleRoutes } from "./console-routes.ts";
export { isRoomAdminBot } from "./moderation.ts";
export type { GroupRules, MembershipQuestion } from "./rules.ts";

/** How long the listing of a room homed elsewhere, read from this server's Synapse, is used. */
const OTHER_ROOMS_MS = 30_000;

/** Discoverable groups: the directory of listed rooms, and who may knock on and join them. */
export function startGroups(d: {
  serverName: string;
  knex: Knex;
  homeserverUrl: string;
  asToken: string;
  botUserId: string;
  admin: SynapseAdmin;
  professionOf: (userId: string) => Promise<string | undefined>;
  peers: PeerClient;
  peerServers: () => string[];
  peerTimeoutMs: number;
  log: Logger;
}) {
  const groups = groupsStore(d.knex);
  const bot = asUser(d.homeserverUrl, d.asToken, d.botUserId);
  const indexer = createGroupIndexer({
    groups,
    bot,
    botUserId: d.botUserId,
    serverName: d.serverName,
    log: d.log,
  });

  // Rooms homed on other organisations that this server takes part in: their listing as this
  // server's copy of the room holds it, so its own users and the PDUs it receives obey it too.
  type Listing = { known: boolean; entry?: GroupEntry | undefined };
  const others = new Map<string, Listing & { until: number }>();
  const fromSynapse = async (roomId: string): Promise<Listing> => {
    const hit = others.get(roomId);
    if (hit && hit.until > Date.now()) return hit;
    let entry: GroupEntry | undefined;
    let known = false;
    try {
      const state = await roomStateOf(d.admin, roomId, [
        "m.room.create",
        GROUP_EVENT,
        "m.room.join_rules",
        "m.room.name",
      ]);
      const content = (type: string) => state.get(type)?.content;
      // A room this server only knows from its users' knocks or invites (out of band: no room
      // state of its own) is one it does not take part in; its listing is not known here.
      known = content("m.room.create") !== undefined;
      const listing = GroupListingSchema.safeParse(content(GROUP_EVENT) ?? {});
      const joinRule = content("m.room.join_rules")?.join_rule;
      const name = content("m.room.name")?.name;
      if (listing.success) {
        entry = {
          room_id: roomId,
          ...listing.data,
          join_rule: typeof joinRule === "string" ? joinRule : undefined,
          name: typeof name === "string" ? name : undefined,
          members: 0,
        };
      }
    } catch (err) {
      // A room this server does not take part in: the room's own organisation decides.
      if (!(err instanceof MatrixRequestError && err.status === 404)) throw err;
    }
    const listing = { known, entry, until: Date.now() + OTHER_ROOMS_MS };
    // Only listings are remembered: a room this server is only joining shows no state yet, and a
    // remembered "not listed" would let a limit set meanwhile go unapplied for as long as it is kept.
    if (entry) others.set(roomId, listing);
    if (others.size > 10_000) others.delete(others.keys().next().value ?? "");
    return listing;
  };
  const rules = createGroupRules({
    serverName: d.serverName,
    listingOf: async (roomId) => {
      const entry = await groups.get(roomId);
      return entry ? { known: true, entry } : fromSynapse(roomId);
    },
    professionOf: d.professionOf,
    botUserId: d.botUserId,
  });

  /**
   * A knock Synapse took without asking (its own user's, straight to Synapse: Synapse has no
   * decision point for it) is retracted by the room-admin bot with the reason, in the rooms it indexes.
   */
  const retract = async (e: AppserviceEvent): Promise<void> => {
    if (e.type !== "m.room.member" || !e.room_id || !e.state_key) return;
    if ((e as { content?: { membership?: unknown } }).content?.membership !== "knock") return;
    if (!(await groups.get(e.room_id))) return;
    const decision = await rules.membership({
      user_id: e.state_key,
      room_id: e.room_id,
      membership: "knock",
    });
    if (decision.allowed) return;
    try {
      await bot("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(e.room_id)}/kick`, {
        user_id: e.state_key,
        reason: decision.reason,
      });
      d.log.info({ room_id: e.room_id, user_id: e.state_key }, "retracted a knock the group's rules refuse");
    } catch (err) {
      // Already gone (withdrawn, or retracted by a replayed event): nothing to do.
      if (!(err instanceof MatrixRequestError && err.status === 403)) throw err;
    }
  };

  /**
   * Synapse's room upgrade copies a fixed list of state types, not ours. When the room-admin bot
   * joins a successor room (retention's upgrade follower has it invited as the room's admin), it
   * sets the predecessor's listing there, through the same decision as any listing; the
   * tombstoned room leaves the directory. A failure is logged, never holding up the transaction.
   */
  const carryOver = async (e: AppserviceEvent): Promise<void> => {
    if (e.type !== "m.room.member" || e.state_key !== d.botUserId || !e.room_id) return;
    if ((e as { content?: { membership?: unknown } }).content?.membership !== "join") return;
    const successor = e.room_id;
    const stateOf = (roomId: string, type: string) =>
      bot("GET", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/${type}/`).catch(
        (err: unknown) => {
          if (err instanceof MatrixRequestError && err.status === 404) return undefined;
          throw err;
        },
      );
    try {
      const predecessor = (
        (await stateOf(successor, "m.room.create"))?.predecessor as { room_id?: unknown } | undefined
      )?.room_id;
      if (typeof predecessor !== "string") return;
      if (await stateOf(successor, GROUP_EVENT)) return;
      const listing = await stateOf(predecessor, GROUP_EVENT);
      await groups.remove(predecessor);
      if (!listing || !GroupListingSchema.safeParse(listing).success) return;
      await bot(
        "PUT",
        `/_matrix/client/v3/rooms/${encodeURIComponent(successor)}/state/${GROUP_EVENT}/`,
        listing,
      );
      d.log.info({ room_id: successor, predecessor }, "carried the group listing over to the upgraded room");
    } catch (err) {
      d.log.warn({ err, room_id: successor }, "could not carry a group listing over to the upgraded room");
    }
  };

  /**
   * A member's verification changed (revoked, run out, another profession): the room-admin bot
   * removes them from the profession-limited groups they no longer fit, with the reason.
   */
  const recheck = async (userId: string, rooms: readonly string[]): Promise<void> => {
    for (const roomId of rooms) {
      const entry = await groups.get(roomId);
      if (!entry?.listed || entry.professions.length === 0) continue;
      const decision = await rules.membership({ user_id: userId, room_id: roomId, membership: "join" });
      if (decision.allowed) continue;
      try {
        await bot("POST", `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/kick`, {
          user_id: userId,
          reason: decision.reason,
        });
        d.log.info(
          { room_id: roomId, user_id: userId },
          "removed a member the group's professions no longer admit",
        );
      } catch (err) {
        // Gone already (left, or removed by a moderator): nothing to do.
        if (!(err instanceof MatrixRequestError && err.status === 403)) throw err;
      }
    }
  };

  return {
    rules,
    recheck,
    /** The console's groups page (console-routes.ts): knocks, approve, refuse, unlist, as the bot. */
    moderation: createModeration({ ...d, groups, bot, rules, refresh: indexer.refresh }),
    onEvents: async (events: readonly AppserviceEvent[]): Promise<void> => {
      await indexer.onEvents(events);
      for (const e of events) {
        await retract(e);
        await carryOver(e);
      }
    },
    ...createGroupRoutes({ ...d, groups }),
  };
}
export type Groups = ReturnType<typeof startGroups>;
