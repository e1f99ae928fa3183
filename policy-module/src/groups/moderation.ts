import { MatrixRequestError, type AsUser, type SynapseAdmin } from "@medmesh/common";
import { Refusal } from "../proxy/index.ts";
import { serverOf } from "../proxy/policy.ts";
import type { GroupEntry, GroupsStore } from "./groups-store.ts";
import { GROUP_EVENT, KNOCKABLE } from "./listing.ts";
import type { GroupRules } from "./rules.ts";

/** A request to join (knock) waiting in a group, as the console shows it. */
export interface PendingKnock {
  user_id: string;
  display_name?: string | undefined;
  reason?: string | undefined;
  since: string;
  /** The knocker's organisation (the server that vouches for them). */
  organisation: string;
  /** Their verified profession (own record or their organisation's attestation); null: not verified. */
  profession: string | null;
  /** Whether the group's rule admits them now; an approve asks the invite decision again. */
  admissible: boolean;
  why_not?: string;
}

export type ListedGroup = GroupEntry & { in_directory: boolean };

interface StateEvent {
  type: string;
  state_key: string;
  sender: string;
  origin_server_ts: number;
  content: Record<string, unknown>;
}

const enc = encodeURIComponent;
const ROOM_ID = /^![^\s/]+$/;
const LIMIT = 200;
/**
 * The room-admin bot of this or a trusted organisation: it invites only when an org admin approves
 * a knock in the console, so the invite gate counts it as a verified inviter (the knocker asked).
 */
export function isRoomAdminBot(userId: string, serverName: string, isTrusted: (server: string) => boolean) {
  const server = serverOf(userId);
  return (
    server !== undefined && userId === `@medmesh:${server}` && (server === serverName || isTrusted(server))
  );
}

/** Synapse's errors carry "M_FORBIDDEN (403): " before the reason; a person wants the reason. */
export const reasonOf = (err: MatrixRequestError): string => err.message.replace(/^\S+ \(\d+\): /, "");

/**
 * What the console does with this organisation's listed groups (docs/groups.md): their pending
 * knocks, read from Synapse as the room-admin bot (in every room it administers, groups included),
 * and the bot's approve (invite), refuse (kick the knock with a reason) and unlist. The bot's
 * invite goes through the invite decision like anyone's, so the group's rule decides an approve.
 */
export function createModeration(d: {
  serverName: string;
  groups: GroupsStore;
  bot: AsUser;
  admin: SynapseAdmin;
  rules: GroupRules;
  professionOf: (userId: string) => Promise<string | undefined>;
  refresh: (roomId: string) => Promise<void>;
}) {
  /** The server of the room's creator: a room made on another organisation is theirs to manage. */
  const homeOf = async (roomId: string): Promise<string | undefined> => {
    try {
      const room = await d.admin.request<{ creator?: string }>(
        "GET",
        `/_synapse/admin/v1/rooms/${enc(roomId)}`,
      );
      return room.creator ? serverOf(room.creator) : undefined;
    } catch (err) {
      if (err instanceof MatrixRequestError && err.status === 404) return undefined;
      throw err;
    }
  };

  /** A listed group of this organisation, or a refusal saying which of these it is not. */
  const group = async (roomId: string): Promise<GroupEntry> => {
    if (!ROOM_ID.test(roomId)) throw new Refusal(400, "M_INVALID_PARAM", `${roomId} is not a Matrix room ID`);
    const entry = await d.groups.get(roomId);
    if (!entry)
      throw new Refusal(
        404,
        "M_NOT_FOUND",
        `${roomId} is not a room of ${d.serverName}'s group directory (unknown, or MedMesh's room-admin bot is not in it)`,
      );
    const home = await homeOf(roomId);
    if (home !== d.serverName)
      throw new Refusal(
        403,
        "M_FORBIDDEN",
        `${roomId} belongs to another organisation (${home ?? "unknown"}); this console manages only groups of ${d.serverName}`,
      );
    if (!entry.listed)
      throw new Refusal(404, "M_NOT_FOUND", `${entry.name ?? roomId} is not listed in the group directory`);
    return entry;
  };

  const memberOf = async (roomId: string, userId: string): Promise<string> => {
    try {
      const m = await d.bot<{ membership?: unknown }>(
        "GET",
        `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`,
      );
      return typeof m.membership === "string" ? m.membership : "none";
    } catch (err) {
      if (err instanceof MatrixRequestError && err.status === 404) return "none";
      throw err;
    }
  };

  /** The knock still waits: approving or refusing anything else would act on a stale page. */
  const pending = async (g: GroupEntry, userId: string): Promise<void> => {
    if (!/^@[^:]+:.+$/.test(userId))
      throw new Refusal(400, "M_INVALID_PARAM", `${userId} is not a Matrix user ID`);
    const membership = await memberOf(g.room_id, userId);
    if (membership !== "knock")
      throw new Refusal(
        409,
        "M_CONFLICT",
        `${userId} has no pending request to join ${g.name ?? g.room_id} (membership: ${membership}); reload the page`,
      );
  };

  const describe = async (g: GroupEntry, e: StateEvent): Promise<PendingKnock> => {
    const userId = e.state_key;
    const [profession, decision] = await Promise.all([
      d.professionOf(userId).catch(() => undefined),
      d.rules.membership({ user_id: userId, room_id: g.room_id, membership: "join" }),
    ]);
    const text = (v: unknown) => (typeof v === "string" && v.trim() ? v : undefined);
    return {
      user_id: userId,
      display_name: text(e.content.displayname),
      reason: text(e.content.reason),
      since: new Date(e.origin_server_ts).toISOString(),
      organisation: serverOf(userId) ?? "",
      profession: profession ?? null,
      admissible: decision.allowed,
      ...(decision.allowed ? {} : { why_not: decision.reason }),
    };
  };

  return {
    group,
    /** This organisation's listed groups (in the directory or not: a join rule may keep one out). */
    async list(): Promise<ListedGroup[]> {
      const listed = await d.groups.allListed(LIMIT);
      const homes = await Promise.all(listed.map((g) => homeOf(g.room_id)));
      return listed
        .filter((_, i) => homes[i] === d.serverName)
        .map((g) => ({ ...g, in_directory: KNOCKABLE.has(g.join_rule ?? "") }));
    },
    async knocks(roomId: string): Promise<{ group: GroupEntry; knocks: PendingKnock[] }> {
      const g = await group(roomId);
      const state = await d.bot<StateEvent[]>("GET", `/_matrix/client/v3/rooms/${enc(roomId)}/state`);
      const waiting = state
        .filter((e) => e.type === "m.room.member" && e.content.membership === "knock")
        .sort((a, b) => a.origin_server_ts - b.origin_server_ts);
      return { group: g, knocks: await Promise.all(waiting.map((e) => describe(g, e))) };
    },
    /** Invites the knocker as the bot; the invite decision's refusal comes back as Synapse's 403. */
    async approve(roomId: string, userId: string): Promise<GroupEntry> {
      const g = await group(roomId);
      await pending(g, userId);
      await d.bot("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: userId });
      return g;
    },
    /** Kicks the knock with the reason: the knocker's membership becomes leave, the reason on it. */
    async refuse(roomId: string, userId: string, reason: string): Promise<GroupEntry> {
      const g = await group(roomId);
      await pending(g, userId);
      await d.bot("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/kick`, { user_id: userId, reason });
      return g;
    },
    /** Sets listed: false on the room's listing (the state_event decision checks it), then re-reads the room. */
    async unlist(roomId: string): Promise<GroupEntry> {
      const g = await group(roomId);
      const path = `/_matrix/client/v3/rooms/${enc(roomId)}/state/${GROUP_EVENT}/`;
      const content = await d.bot("GET", path);
      await d.bot("PUT", path, { ...content, listed: false });
      await d.refresh(roomId);
      return g;
    },
  };
}
export type Moderation = ReturnType<typeof createModeration>;
