import type { Logger } from "pino";
import type { PeerClient } from "../directory/index.ts";
import type { PeerRoute } from "../peer-api.ts";
import { Refusal } from "../proxy/index.ts";
import { route, type Route } from "../proxy/router.ts";
import type { GroupEntry, GroupsStore } from "./groups-store.ts";

export const GROUP_DIRECTORY_PATH = "/_medmesh/groups/v1/directory";
const LIMIT = 100;

/** A directory entry as a clinician sees it: where the group is, and whether they may ask to join. */
interface Listed {
  room_id: string;
  organisation: string;
  name?: string | undefined;
  topic?: string | undefined;
  description?: string | undefined;
  scope: "organisation" | "network";
  professions: string[];
  members: number;
  may_knock: boolean;
  why_not?: string;
}

const publicEntry = (g: GroupEntry) => ({
  room_id: g.room_id,
  name: g.name,
  topic: g.topic,
  description: g.description,
  scope: g.scope,
  professions: g.professions,
  members: g.members,
});

/**
 * The group directory: for a verified clinician, this organisation's listed groups and every
 * trusted organisation's groups listed for the network (asked over the peer API with a short
 * timeout, as the clinician directory does). Whether they may knock is worked out from the
 * listing for the answer; the room's organisation decides again at the knock itself.
 */
export function createGroupRoutes(d: {
  serverName: string;
  groups: GroupsStore;
  professionOf(userId: string): Promise<string | undefined>;
  peers: PeerClient;
  peerServers(): string[];
  peerTimeoutMs: number;
  log: Logger;
}): { clientRoutes: Route[]; peerRoutes: PeerRoute[] } {
  const annotate = (g: ReturnType<typeof publicEntry>, organisation: string, profession: string): Listed => {
    const why =
      g.scope === "organisation" && organisation !== d.serverName
        ? "listed for its own organisation's clinicians only"
        : g.professions.length > 0 && !g.professions.includes(profession)
          ? `for ${g.professions.join(", ")} only; you are registered as ${profession}`
          : undefined;
    return { ...g, organisation, may_knock: why === undefined, ...(why ? { why_not: why } : {}) };
  };

  const fromPeer = async (server: string, search: string): Promise<ReturnType<typeof publicEntry>[]> => {
    const body = (await d.peers.getJson(
      server,
      `${GROUP_DIRECTORY_PATH}?search=${encodeURIComponent(search)}`,
      d.peerTimeoutMs,
    )) as { groups?: unknown };
    if (!Array.isArray(body.groups)) throw new Error("no groups in the answer");
    return body.groups.filter(isPublicEntry).filter((g) => g.scope === "network");
  };

  const clientRoutes: Route[] = [
    route("GET", `^${GROUP_DIRECTORY_PATH}$`, async (ctx) => {
      const requester = await ctx.requireRequester();
      const profession = await d.professionOf(requester.userId);
      if (profession === undefined) {
        throw new Refusal(403, "M_FORBIDDEN", "Only verified clinicians see the group directory");
      }
      const search = (ctx.url.searchParams.get("search") ?? "").trim().slice(0, 100);
      const own = await d.groups.listed({ networkOnly: false, search, limit: LIMIT });
      const groups = own.map((g) => annotate(publicEntry(g), d.serverName, profession));
      const peers = d.peerServers().filter((s) => s !== d.serverName);
      const answers = await Promise.allSettled(peers.map((s) => fromPeer(s, search)));
      const unreachable: string[] = [];
      answers.forEach((a, i) => {
        const server = peers[i] ?? "";
        if (a.status === "fulfilled") {
          groups.push(...a.value.map((g) => annotate(g, server, profession)));
        } else {
          unreachable.push(server);
          d.log.warn({ server, error: (a.reason as Error).message }, "peer group directory unreachable");
        }
      });
      return { status: 200, body: { groups: groups.slice(0, LIMIT), unreachable } };
    }),
  ];

  const peerRoutes: PeerRoute[] = [
    {
      pattern: new RegExp(`^${GROUP_DIRECTORY_PATH}$`),
      handle: async (ctx) => {
        const search = (ctx.url.searchParams.get("search") ?? "").trim().slice(0, 100);
        const groups = await d.groups.listed({ networkOnly: true, search, limit: LIMIT });
        return { status: 200, body: { groups: groups.map(publicEntry) } };
      },
    },
  ];
  return { clientRoutes, peerRoutes };
}

function isPublicEntry(v: unknown): v is ReturnType<typeof publicEntry> {
  if (typeof v !== "object" || v === null) return false;
  const g = v as Record<string, unknown>;
  return (
    typeof g.room_id === "string" &&
    (g.scope === "network" || g.scope === "organisation") &&
    Array.isArray(g.professions) &&
    g.professions.every((p) => typeof p === "string") &&
    typeof g.members === "number"
  );
}
