import type { AuditLog } from "@medmesh/common";
import { MatrixRequestError } from "@medmesh/common";
import { Refusal, route, type OwnResponse, type ProxyContext, type Route } from "../proxy/index.ts";
import { allows, type Permission, type Role, type Roles } from "./roles.ts";
import type { Session, Sessions } from "./sessions.ts";

export const CONSOLE_PATH = "/_medmesh/console";
export const API = `${CONSOLE_PATH}/api/v1`;
export const COOKIE = "medmesh_console";
export const CSRF_HEADER = "x-medmesh-csrf";

/** The signed-in console user a request acts for. */
export interface Actor {
  userId: string;
  role: Role;
  session: Session;
  sessionId: string;
}

export interface ApiDeps {
  sessions: Sessions;
  roles: Roles;
  audit: AuditLog;
  serverName: string;
}

export type Handler = (ctx: ProxyContext, actor: Actor, params: string[]) => Promise<OwnResponse>;

const NO_STORE = { "cache-control": "no-store" };

export const json = (body: unknown, status = 200, headers: Record<string, string | string[]> = {}) => ({
  status,
  body,
  headers: { ...NO_STORE, ...headers },
});

export function cookieOf(ctx: ProxyContext): string | undefined {
  for (const part of (ctx.req.headers.cookie ?? "").split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === COOKIE) return rest.join("=");
  }
  return undefined;
}

/** Secure cookies, except on plain-HTTP loopback (the local runner and the tests). */
export function sessionCookie(ctx: ProxyContext, value: string, maxAgeS: number): string {
  const host = (ctx.req.headers.host ?? "").replace(/:\d+$/, "");
  const loopback = host === "localhost" || host === "127.0.0.1" || host === "[::1]";
  const secure = loopback && ctx.req.headers["x-forwarded-proto"] !== "https" ? "" : "; Secure";
  return `${COOKIE}=${value}; Path=${CONSOLE_PATH}; HttpOnly; SameSite=Strict; Max-Age=${String(maxAgeS)}${secure}`;
}

/** The console session of a request, or a refusal saying plainly what is wrong. */
export async function requireSession(ctx: ProxyContext, d: ApiDeps): Promise<Actor> {
  const id = cookieOf(ctx);
  if (!id) throw new Refusal(401, "M_MISSING_TOKEN", "Not signed in to the console");
  const found = await d.sessions.use(id);
  if (found === "unknown")
    throw new Refusal(
      401,
      "M_UNKNOWN_TOKEN",
      "This console session is not valid (signed out or forged); sign in again",
    );
  if (found === "expired")
    throw new Refusal(401, "M_UNKNOWN_TOKEN", "Your console session has expired; sign in again");
  const role = await d.roles.roleOf(found.userId);
  if (!role) {
    await d.sessions.end(id);
    throw new Refusal(403, "M_FORBIDDEN", "You no longer have a role in this organisation's console");
  }
  return { userId: found.userId, role, session: found, sessionId: id };
}

/**
 * Every state-changing request carries the session's CSRF token in a header (a page of another
 * site can make the browser send the cookie, but cannot read the token); SameSite=Strict is the
 * first line, this the second. A foreign Origin is refused too.
 */
export function checkCsrf(ctx: ProxyContext, actor: Actor): void {
  const origin = ctx.req.headers.origin;
  if (origin !== undefined && origin !== "null") {
    let host: string;
    try {
      host = new URL(origin).host;
    } catch {
      host = "";
    }
    if (host !== ctx.req.headers.host)
      throw new Refusal(
        403,
        "M_FORBIDDEN",
        "Cross-site request refused: the console only accepts its own pages",
      );
  }
  const token = ctx.req.headers[CSRF_HEADER];
  if (typeof token !== "string" || token !== actor.session.csrfToken)
    throw new Refusal(403, "M_FORBIDDEN", "Missing or wrong CSRF token: reload the console and try again");
}

/** A console API route: session, CSRF on state changes, the role's permission; then the handler. */
export function consoleRoute(
  d: ApiDeps,
  method: "GET" | "POST" | "PUT" | "DELETE",
  path: string,
  permission: Permission,
  handler: Handler,
): Route {
  return route(method, `^${API}${path}`, async (ctx, params) => {
    const actor = await requireSession(ctx, d);
    if (method !== "GET") checkCsrf(ctx, actor);
    if (!allows(actor.role, permission)) {
      throw new Refusal(403, "M_FORBIDDEN", `Your role (${actor.role}) does not allow this (${permission})`);
    }
    return handler(ctx, actor, params);
  });
}

/** A user of this organisation, or a refusal: an admin of A never acts on B's users. */
export function localUser(userId: string, serverName: string): string {
  if (!/^@[^:]+:.+$/.test(userId))
    throw new Refusal(400, "M_INVALID_PARAM", `${userId} is not a Matrix user ID`);
  if (!userId.endsWith(`:${serverName}`))
    throw new Refusal(
      403,
      "M_FORBIDDEN",
      `${userId} belongs to another organisation; this console manages only users of ${serverName}`,
    );
  return userId;
}

/** Synapse's answer as the console's own error (its status and message, e.g. an unknown device). */
export function fromSynapse(err: unknown): never {
  if (err instanceof MatrixRequestError)
    throw new Refusal(err.status >= 500 ? 502 : err.status, err.errcode, err.message);
  throw err;
}

/** Audits a console action with the console user as actor. */
export async function audited(
  d: ApiDeps,
  actor: Actor,
  action: string,
  object: string,
  outcome: string,
  details: Record<string, unknown> = {},
): Promise<void> {
  await d.audit.record({
    actor: actor.userId,
    action: `console.${action}`,
    object,
    outcome,
    details: { role: actor.role, ...details },
  });
}
