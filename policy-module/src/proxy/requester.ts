import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { Refusal } from "./context.ts";

export interface Requester {
  userId: string;
  deviceId?: string;
}

/**
 * Who a token is — or, for an appservice's token with `?user_id=` (identity assertion), the user
 * it acts as: Synapse answers whoami with the same parameter exactly as it will treat the request,
 * so the proxy's rules apply to an appservice's users (the bridge's ghosts) like to anyone else.
 */
export type WhoAmI = (token: string, assertedUserId?: string) => Promise<Requester | undefined>;

/**
 * The access token of a client request, read the way Synapse reads it (Authorization header
 * `Bearer <token>`, or the legacy `access_token` query parameter, never both). A credential that
 * is present but malformed is refused here, as Synapse would refuse it, instead of being passed
 * to whoami: a token with bytes outside visible ASCII cannot be put in a header (fetch throws) and
 * would make Synapse fail with a 500. Throws a 401 `Refusal`; undefined means no credential.
 */
export function accessTokenOf(req: IncomingMessage, url: URL): string | undefined {
  const auth = req.headers.authorization;
  const query = url.searchParams.getAll("access_token");
  if (auth !== undefined) {
    if (query.length > 0) throw missingToken("Use the Authorization header or access_token, not both");
    const match = /^Bearer (.*)$/s.exec(auth);
    if (!match) throw missingToken("The Authorization header must be 'Bearer <access token>'");
    return checkedToken(match[1] ?? "");
  }
  if (query.length > 1) throw missingToken("Only one access_token parameter is allowed");
  return query[0] === undefined ? undefined : checkedToken(query[0]);
}

// Synapse's tokens (syt_…, appservice tokens) are visible ASCII; anything else cannot be one.
const TOKEN = /^[\x21-\x7e]+$/;

function checkedToken(token: string): string {
  if (token === "") throw missingToken("The access token is empty");
  if (!TOKEN.test(token)) {
    throw new Refusal(401, "M_UNKNOWN_TOKEN", "Unknown or expired access token", { soft_logout: false });
  }
  return token;
}

const missingToken = (reason: string): Refusal => new Refusal(401, "M_MISSING_TOKEN", reason);

/**
 * Who is calling, asked of Synapse (`/account/whoami`) once per token and remembered briefly:
 * the proxy needs the user for rate limits and policy decisions on every request, and a logout
 * is honoured within `ttlMs`. Unknown tokens are remembered for a short time too, so a flood
 * of bad tokens costs Synapse one look-up per token, not one per request.
 */
export function createRequesterCache(
  synapseUrl: URL,
  opts: { ttlMs?: number; negativeTtlMs?: number; maxEntries?: number } = {},
): { whoami: WhoAmI; forget(token: string): void } {
  const ttl = opts.ttlMs ?? 60_000;
  const negativeTtl = opts.negativeTtlMs ?? 5_000;
  const max = opts.maxEntries ?? 50_000;
  const cache = new Map<string, { requester: Requester | undefined; expires: number }>();
  const pending = new Map<string, Promise<Requester | undefined>>();
  const key = (token: string, asserted = ""): string =>
    createHash("sha256").update(`${token}\n${asserted}`).digest("base64url");

  const lookup = async (token: string, asserted: string | undefined): Promise<Requester | undefined> => {
    const url = new URL("/_matrix/client/v3/account/whoami", synapseUrl);
    if (asserted !== undefined) url.searchParams.set("user_id", asserted);
    const res = await fetch(url, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(10_000),
    });
    if (res.status === 401 || res.status === 403) return undefined;
    if (!res.ok) throw new Error(`whoami answered ${String(res.status)}`);
    const body = (await res.json()) as { user_id?: unknown; device_id?: unknown };
    if (typeof body.user_id !== "string") throw new Error("whoami answered without user_id");
    return {
      userId: body.user_id,
      ...(typeof body.device_id === "string" ? { deviceId: body.device_id } : {}),
    };
  };

  return {
    async whoami(token, asserted) {
      const k = key(token, asserted);
      const hit = cache.get(k);
      if (hit && hit.expires > Date.now()) return hit.requester;
      let p = pending.get(k);
      if (!p) {
        p = lookup(token, asserted).finally(() => pending.delete(k));
        pending.set(k, p);
      }
      const requester = await p;
      if (cache.size >= max) cache.delete(cache.keys().next().value as string);
      cache.set(k, { requester, expires: Date.now() + (requester ? ttl : negativeTtl) });
      return requester;
    },
    forget(token) {
      cache.delete(key(token)); // the token's own entry; asserted identities expire with their TTL
    },
  };
}
