import { expect } from "vitest";
import { createSynapseAdmin, type SynapseAdmin } from "@medmesh/common";
import type { RunningOrganisation } from "@medmesh/deploy";
import { namedUsers } from "./scenarios.ts";
import type { TestNetwork, TestUser } from "./test-network.ts";

export interface Answer {
  status: number;
  body: Record<string, unknown>;
}
/** Through the organisation's proxy (as clients reach it), or straight to Synapse (no proxy at all). */
export type Via = "proxy" | "synapse";
const enc = encodeURIComponent;

/**
 * What the every-path tests (one row per rule × path) share: requests through either door, and
 * what Synapse holds afterwards, read through its admin API — so each row can assert both the
 * refusal and that nothing was stored.
 */
export function everyPathKit(net: () => TestNetwork) {
  const org = (i: number): RunningOrganisation => net().orgs[i]!;
  const user = namedUsers(net);
  const admins = new Map<number, SynapseAdmin>();
  const admin = (i: number): SynapseAdmin => {
    let a = admins.get(i);
    if (!a) {
      a = createSynapseAdmin({ url: org(i).synapseUrl, registrationSharedSecret: org(i).registrationSecret });
      admins.set(i, a);
    }
    return a;
  };
  const api = async (
    u: TestUser,
    via: Via,
    method: string,
    path: string,
    body?: unknown,
  ): Promise<Answer> => {
    const base = via === "proxy" ? u.org.clientUrl : u.org.synapseUrl;
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${u.accessToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const roomState = async (i: number, roomId: string) =>
    (
      await admin(i).request<{
        state: { type: string; state_key: string; content: Record<string, unknown> }[];
      }>("GET", `/_synapse/admin/v1/rooms/${enc(roomId)}/state`)
    ).state;
  return {
    org,
    user,
    admin,
    api,
    newRoom: async (u: TestUser, extra: Record<string, unknown> = {}): Promise<string> => {
      const r = await api(u, "proxy", "POST", "/_matrix/client/v3/createRoom", {
        preset: "private_chat",
        ...extra,
      });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return r.body.room_id as string;
    },
    /** What Synapse holds about a user in a room: membership from the room's current state. */
    membership: async (i: number, roomId: string, userId: string): Promise<string | undefined> => {
      const member = (await roomState(i, roomId)).find(
        (e) => e.type === "m.room.member" && e.state_key === userId,
      );
      return member?.content.membership as string | undefined;
    },
    invitedRooms: async (u: TestUser): Promise<string[]> => {
      // Synapse answers a repeated initial sync from a cache for minutes: a filter of its own per call.
      const filter = JSON.stringify({ room: { timeline: { limit: 1 + Math.floor(Math.random() * 1e6) } } });
      const r = await api(u, "synapse", "GET", `/_matrix/client/v3/sync?timeout=0&filter=${enc(filter)}`);
      return Object.keys((r.body.rooms as { invite?: Record<string, unknown> } | undefined)?.invite ?? {});
    },
    roomsNamed: async (i: number, name: string): Promise<number> => {
      const r = await admin(i).request<{ total_rooms: number }>(
        "GET",
        `/_synapse/admin/v1/rooms?search_term=${enc(name)}`,
      );
      return r.total_rooms;
    },
    stateOf: async (
      i: number,
      roomId: string,
      type: string,
      stateKey = "",
    ): Promise<Record<string, unknown> | undefined> => {
      return (await roomState(i, roomId)).find((e) => e.type === type && e.state_key === stateKey)?.content;
    },
    expectRefused: (a: Answer, reason: RegExp): void => {
      expect(a.status, JSON.stringify(a.body)).toBe(403);
      expect(a.body.errcode).toBe("M_FORBIDDEN");
      expect(a.body.error).toMatch(reason);
    },
  };
}
