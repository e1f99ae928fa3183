import { createHash, timingSafeEqual } from "node:crypto";
import type { Request, RequestHandler } from "express";
import { ApiError } from "./errors.ts";

/** Lets a request through, or throws the ApiError (401, 403, 503) that says why not. */
export type Authenticate = (req: Request) => Promise<void>;

/**
 * A part of a listener's API that authenticates its callers its own way: the appservice API
 * (hs_token), the decision API (its own token), the bridge's interop API (signatures). Every path
 * no group claims needs an admin (default deny): a route added without thought is closed.
 */
export interface RouteGroup {
  /** The paths the group owns; ends with "/" so a group cannot claim a sibling by accident. */
  prefix: `/${string}/`;
  /**
   * Runs before the group's routes. "in-handlers": each route authenticates the request itself,
   * because it needs the body (a signature over it), which is parsed only after this check.
   */
  authenticate: Authenticate | "in-handlers";
  /** Who calls the group and with what, for logs and readers of the wiring. */
  description: string;
}

/** The `Authorization: Bearer` token, or undefined when there is none. */
export function bearerToken(req: Request): string | undefined {
  const header = req.get("authorization");
  const m = header ? /^Bearer\s+(\S+)$/i.exec(header) : null;
  return m?.[1];
}

/**
 * Checks a fixed bearer token (both sides hashed: equal lengths for the constant-time comparison,
 * and no length leaks): M_MISSING_TOKEN without one, `invalid` (M_FORBIDDEN) for another.
 */
export function bearerTokenCheck(
  token: string,
  what: string,
  invalid: "M_FORBIDDEN" | "M_UNKNOWN_TOKEN" = "M_FORBIDDEN",
): Authenticate {
  const expected = createHash("sha256").update(token).digest();
  return (req) => {
    const given = bearerToken(req);
    if (given === undefined) return Promise.reject(new ApiError("M_MISSING_TOKEN", `Missing ${what}`));
    if (!timingSafeEqual(createHash("sha256").update(given).digest(), expected))
      return Promise.reject(new ApiError(invalid, `Invalid ${what}`));
    return Promise.resolve();
  };
}

// Neither Node nor Express resolves dot segments, so `/_matrix/app/../x` cannot reach `/x`; should
// anything in front ever resolve them, such a path is still left to the default check.
const DOT_SEGMENT = /(^|\/)\.\.?(\/|$)/;

/**
 * The middleware in front of every route of a listener: the group whose prefix the path starts
 * with authenticates it, otherwise `fallback` does (the admin check on the internal listener,
 * "not found" on a public one).
 */
export function routeGuard(fallback: Authenticate, groups: readonly RouteGroup[]): RequestHandler {
  return (req, _res, next) => {
    const path = req.path;
    const group = DOT_SEGMENT.test(path) ? undefined : groups.find((g) => path.startsWith(g.prefix));
    const check = group ? group.authenticate : fallback;
    if (check === "in-handlers") {
      next();
      return;
    }
    check(req).then(() => {
      next();
    }, next);
  };
}

/** What Synapse says about a Matrix access token. */
export type MatrixTokenInfo = { valid: false } | { valid: true; userId: string; serverAdmin: boolean };
export type MatrixTokenLookup = (token: string) => Promise<MatrixTokenInfo>;

export interface AdminAuthOptions {
  /** The admin bearer token (the content of admin.token_file); undefined: none is accepted. */
  token: string | undefined;
  /** Checks Matrix access tokens; undefined: they are not accepted. */
  matrix: MatrixTokenLookup | undefined;
  /** Only this organisation's server admins are admins here. */
  serverName: string;
}

const digest = (s: string): Buffer => createHash("sha256").update(s).digest();

/** Who passed the admin check, for the audit log: the admin's user ID, or "admin-token". */
const ADMIN_ACTOR = Symbol("medmesh admin actor");
export const adminActorOf = (req: Request): string | undefined =>
  (req as Request & { [ADMIN_ACTOR]?: string })[ADMIN_ACTOR];
const setAdminActor = (req: Request, actor: string): void => {
  (req as Request & { [ADMIN_ACTOR]?: string })[ADMIN_ACTOR] = actor;
};

/**
 * The admin check: the admin token (compared in constant time: both sides hashed, so neither the
 * content nor the length leaks through timing), or the Matrix access token of a Synapse server
 * admin of this organisation. Fails closed: if Synapse cannot be asked, nobody gets in.
 */
export function adminAuthenticator(opts: AdminAuthOptions): Authenticate {
  const expected = opts.token === undefined ? undefined : digest(opts.token);
  const accepted = [
    ...(expected ? ["the admin token"] : []),
    ...(opts.matrix ? ["an organisation admin's Matrix access token"] : []),
  ].join(" or ");
  return async (req) => {
    const token = bearerToken(req);
    if (token === undefined)
      throw new ApiError("M_MISSING_TOKEN", `Admin endpoint: send ${accepted} as a Bearer token`);
    if (expected && timingSafeEqual(digest(token), expected)) {
      setAdminActor(req, "admin-token");
      return;
    }
    if (!opts.matrix) throw new ApiError("M_UNKNOWN_TOKEN", "Unknown admin token");
    let info: MatrixTokenInfo;
    try {
      info = await opts.matrix(token);
    } catch {
      throw new ApiError("M_UNAVAILABLE", "Cannot check the access token with the homeserver; try again");
    }
    if (!info.valid) throw new ApiError("M_UNKNOWN_TOKEN", "Unknown admin or access token");
    if (!info.serverAdmin || !info.userId.endsWith(`:${opts.serverName}`))
      throw new ApiError("M_FORBIDDEN", `${info.userId} is not an admin of this organisation`);
    setAdminActor(req, info.userId);
  };
}

/**
 * Asks Synapse who a token belongs to (whoami) and whether that user is a server admin (the admin
 * API, called with the same token: Synapse answers 403 to anyone but an admin, so no MedMesh
 * credential is needed). `synapseUrl` must be Synapse itself: the policy proxy does not forward
 * the admin API.
 */
export function synapseTokenLookup(synapseUrl: string, timeoutMs = 5000): MatrixTokenLookup {
  const get = (path: string, token: string) =>
    fetch(new URL(path, synapseUrl), {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(timeoutMs),
    });
  return async (token) => {
    const whoami = await get("/_matrix/client/v3/account/whoami", token);
    // 403: a known token whose account may not act (locked, suspended): no admin either.
    if (whoami.status === 401 || whoami.status === 403) return { valid: false };
    if (!whoami.ok) throw new Error(`whoami answered ${String(whoami.status)}`);
    const { user_id: userId } = (await whoami.json()) as { user_id?: unknown };
    if (typeof userId !== "string") throw new Error("whoami answered without user_id");
    const admin = await get(`/_synapse/admin/v1/users/${encodeURIComponent(userId)}/admin`, token);
    if (admin.status === 403) return { valid: true, userId, serverAdmin: false };
    if (!admin.ok) throw new Error(`the admin API answered ${String(admin.status)}`);
    const body = (await admin.json()) as { admin?: unknown };
    return { valid: true, userId, serverAdmin: body.admin === true };
  };
}

/**
 * Keeps Synapse's answers for a while (a dashboard polling /metrics is not two Synapse requests
 * each time), keyed by the token's hash so no token sits in memory; bounded, oldest out first.
 * Failures are not kept: the next request asks again.
 */
export function cachedTokenLookup(
  lookup: MatrixTokenLookup,
  opts: { ttlMs: number; maxEntries?: number; now?: () => number },
): MatrixTokenLookup {
  const now = opts.now ?? Date.now;
  const max = opts.maxEntries ?? 1000;
  const cache = new Map<string, { info: MatrixTokenInfo; until: number }>();
  return async (token) => {
    const key = digest(token).toString("base64");
    const hit = cache.get(key);
    if (hit && hit.until > now()) return hit.info;
    cache.delete(key);
    const info = await lookup(token);
    if (opts.ttlMs > 0) {
      if (cache.size >= max) cache.delete(cache.keys().next().value ?? "");
      cache.set(key, { info, until: now() + opts.ttlMs });
    }
    return info;
  };
}
