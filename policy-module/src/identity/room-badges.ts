import type { AppserviceEvent, SynapseAdmin } from "@medmesh/common";
import type { Logger } from "pino";
import { handledEvents } from "../handled-events.ts";

export const BADGE_EVENT = "org.medmesh.verification";
/**
 * The badge's state key for a member. Not the bare user ID: Matrix's authorisation rules let only
 * that user set state whose key starts with "@", and the badge is the organisation's statement,
 * sent by its bot.
 */
export const badgeStateKey = (userId: string): string => `user:${userId}`;

export interface BadgeContent {
  verified: boolean;
  attestation?: string;
  profession?: string;
  registry?: string;
  expires_at?: string;
  /** The organisation whose own identity provider proved who the clinician is (its SSO). */
  identity_proven_by?: string;
  /** When the bot set it: a re-sent badge is a new event, not deduplicated against the old one. */
  updated_at?: string;
}

/**
 * The verified badge in rooms: a state event `org.medmesh.verification` (state key
 * `user:<user ID>`) per member, with the attestation any client or server can check. The MedMesh bot is invited with
 * power level 100 into every room created through the proxy and joins; it badges members as they
 * join and re-badges a clinician's rooms when their status changes. Members of other
 * organisations are badged with their own organisation's attestation.
 */
export function createRoomBadges(deps: {
  homeserverUrl: string;
  asToken: string;
  botUserId: string;
  serverName: string;
  admin: SynapseAdmin;
  /** The badge for a user (local: from our records; remote: their organisation's attestation). */
  badgeFor(userId: string): Promise<BadgeContent | undefined>;
  /** After a status change was badged: the rooms this organisation's bot administers that the user is in. */
  afterChange?: (userId: string, rooms: readonly string[]) => Promise<void>;
  log: Logger;
}) {
  const call = async (method: string, path: string, body: unknown): Promise<Response> => {
    const url = new URL(path, deps.homeserverUrl);
    url.searchParams.set("user_id", deps.botUserId);
    return fetch(url, {
      method,
      headers: { authorization: `Bearer ${deps.asToken}`, "content-type": "application/json" },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
  };

  const joinedMembers = async (roomId: string): Promise<string[]> => {
    const url = new URL(
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/joined_members`,
      deps.homeserverUrl,
    );
    url.searchParams.set("user_id", deps.botUserId);
    const res = await fetch(url, {
      headers: { authorization: `Bearer ${deps.asToken}` },
      signal: AbortSignal.timeout(15_000),
    });
    if (!res.ok) return [];
    return Object.keys(((await res.json()) as { joined?: Record<string, unknown> }).joined ?? {});
  };

  const badge = async (roomId: string, userId: string): Promise<void> => {
    const content = await deps.badgeFor(userId);
    if (!content) return;
    const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/${BADGE_EVENT}/${encodeURIComponent(badgeStateKey(userId))}`;
    const res = await call("PUT", path, { ...content, updated_at: new Date().toISOString() });
    if (!res.ok)
      deps.log.warn(
        { room_id: roomId, user_id: userId, status: res.status },
        "could not set verification badge",
      );
  };

  // A membership handed over again (a resent transaction) badges nobody twice.
  const handled = handledEvents();
  const servers = joinedServers();

  return {
    /** The appservice's event stream: join when invited, badge members as they join. */
    async onEvents(events: readonly AppserviceEvent[]): Promise<void> {
      for (const e of events as (AppserviceEvent & { content?: { membership?: string } })[]) {
        if (e.type !== "m.room.member" || !e.room_id || !e.state_key || handled.has(e.event_id)) continue;
        try {
          if (e.state_key === deps.botUserId && e.content?.membership === "invite") {
            const res = await call("POST", `/_matrix/client/v3/join/${encodeURIComponent(e.room_id)}`, {});
            if (!res.ok) deps.log.warn({ room_id: e.room_id, status: res.status }, "bot could not join");
            // Members who joined before the bot (the creator, at least) are badged now.
            else
              for (const member of await joinedMembers(e.room_id))
                if (member !== deps.botUserId) await badge(e.room_id, member);
          } else if (e.state_key !== deps.botUserId && e.content?.membership === "join") {
            await badge(e.room_id, e.state_key);
            // A server joining may miss badges set while its join was in flight: set ours again,
            // once per server and room (not at each of its members' joins: in a channel of
            // thousands that re-sent every local badge per remote member, bench/broadcast.ts).
            if (!e.state_key.endsWith(`:${deps.serverName}`) && servers.firstJoin(e.room_id, e.state_key)) {
              for (const member of await joinedMembers(e.room_id)) {
                if (member !== deps.botUserId && member.endsWith(`:${deps.serverName}`))
                  await badge(e.room_id, member);
              }
            }
          } else if (e.content?.membership === "leave" || e.content?.membership === "ban") {
            // Its server may be gone from the room: its next join is a first one again.
            servers.left(e.room_id, e.state_key);
          }
          handled.add(e.event_id);
        } catch (err) {
          // A badge is not worth holding up the transaction (and every later event) for.
          deps.log.warn({ err, room_id: e.room_id }, "verification badge failed");
        }
      }
    },
    /**
     * A clinician's status changed: update the badge in every room they are in that this
     * organisation's bot administers — a local clinician's also in their profile field (extended
     * profiles, set with the admin's right to edit any local profile); another organisation's user
     * (a revocation notice, an attestation refreshed or run out) in the rooms this organisation
     * hosts. Synapse's admin API lists a remote user's rooms too (those this server is in).
     * Returns the rooms badged.
     */
    async changed(userId: string): Promise<number> {
      const content = await deps.badgeFor(userId);
      const local = userId.endsWith(`:${deps.serverName}`);
      if (local)
        await deps.admin
          .request("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(userId)}/${BADGE_EVENT}`, {
            [BADGE_EVENT]: content ?? { verified: false },
          })
          .catch((err: unknown) => {
            deps.log.warn({ err, user_id: userId }, "could not set the verification profile field");
          });
      const roomsOf = async (user: string): Promise<string[]> =>
        (
          await deps.admin.request<{ joined_rooms: string[] }>(
            "GET",
            `/_synapse/admin/v1/users/${encodeURIComponent(user)}/joined_rooms`,
          )
        ).joined_rooms;
      const [theirs, ours] = await Promise.all([roomsOf(userId), roomsOf(deps.botUserId)]);
      const administered = new Set(ours);
      const rooms = theirs.filter((r) => administered.has(r));
      for (const roomId of rooms) await badge(roomId, userId).catch(() => undefined);
      await deps.afterChange?.(userId, rooms);
      return rooms.length;
    },
  };
}

/**
 * Which members of other servers this process has seen join each room, per server: a server's
 * first member (since the process started, or since its members seen here all left) is the join
 * whose badges are re-sent. A profile change (a join after a join) is no first join; a restart
 * forgets them all, so a server's next join re-sends once more.
 */
export function joinedServers() {
  const members = new Map<string, Set<string>>();
  const key = (roomId: string, userId: string) => `${roomId}|${userId.slice(userId.indexOf(":") + 1)}`;
  return {
    /** True for the first join of the user's server in the room (as far as this process saw). */
    firstJoin(roomId: string, userId: string): boolean {
      const joined = members.get(key(roomId, userId));
      if (joined) joined.add(userId);
      else members.set(key(roomId, userId), new Set([userId]));
      return !joined;
    },
    left(roomId: string, userId: string): void {
      const k = key(roomId, userId);
      members.get(k)?.delete(userId);
      if (members.get(k)?.size === 0) members.delete(k);
    },
  };
}
