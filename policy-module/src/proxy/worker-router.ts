import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { WorkerRouting } from "./config.ts";
import { parseXMatrix } from "./federation-rules.ts";

export interface RouteRequest {
  listener: "client" | "federation";
  method: string;
  rawPath: string;
  req: IncomingMessage;
  /** The authenticated user, when the client listener resolved one. */
  userId?: string;
}

export interface WorkerRouter {
  /** The upstream for a request, or undefined for the listener's default (the main process). */
  pick(r: RouteRequest): { upstream: URL; route: string } | undefined;
}

/**
 * Picks the Synapse process for a request after every proxy rule has passed (the rules never
 * depend on where a request goes). Sticky choices hash a key (user, room, origin server) over the
 * route's upstreams: the topology is fixed for the proxy's lifetime, so a plain modulo is stable.
 */
export function createWorkerRouter(routing: WorkerRouting): WorkerRouter {
  const routes = routing.map((r) => ({
    ...r,
    regex: new RegExp(r.pattern),
    urls: r.upstreams.map((u) => new URL(u)),
    next: 0,
  }));
  return {
    pick(r) {
      for (const route of routes) {
        if (route.listener !== r.listener) continue;
        if (route.methods && !route.methods.includes(r.method)) continue;
        if (!route.regex.test(r.rawPath)) continue;
        const n = route.urls.length;
        let key: string | undefined;
        if (route.balance === "user") key = r.userId ?? tokenKey(r.req);
        else if (route.balance === "room") key = /\/rooms\/([^/]+)/.exec(r.rawPath)?.[1];
        else if (route.balance === "origin") key = originOf(r.req);
        const index = key === undefined ? route.next++ % n : bucket(key, n);
        const upstream = route.urls[index];
        return upstream ? { upstream, route: route.name } : undefined;
      }
      return undefined;
    },
  };
}

function bucket(key: string, n: number): number {
  return createHash("sha256").update(key).digest().readUInt32BE(0) % n;
}

/** Without a resolved user: the credential itself, so one device still sticks to one worker. */
function tokenKey(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization;
  return auth?.startsWith("Bearer ") ? auth.slice(7) : undefined;
}

function originOf(req: IncomingMessage): string | undefined {
  return parseXMatrix(req.headers.authorization)?.origin;
}
