import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";

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

/** The access token of a client request: Authorization header first, then the legacy query parameter. */
export function accessTokenOf(req: IncomingMessage, url: URL): string | undefined {
  const auth = req.headers.authorization;
  if (auth?.startsWith("Bearer ")) return auth.slice(7).trim() || undefined;
  return url.searchParams.get("access_token") ?? undefined;
}

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
