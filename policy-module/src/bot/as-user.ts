import { MatrixRequestError } from "@medmesh/common";

/** The client API as one of the appservice's users (`?user_id=` assertion with the as_token). */
export function asUser(homeserverUrl: string, asToken: string, userId: string) {
  return async <T = Record<string, unknown>>(method: string, path: string, body?: unknown): Promise<T> => {
    const url = new URL(path, homeserverUrl);
    url.searchParams.set("user_id", userId);
    const res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${asToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(30_000),
    });
    const parsed = (await res.json().catch(() => ({}))) as T & { errcode?: string; error?: string };
    if (!res.ok)
      throw new MatrixRequestError(
        res.status,
        parsed.errcode ?? "M_UNKNOWN",
        parsed.error ?? `${method} ${path}`,
      );
    return parsed;
  };
}
export type AsUser = ReturnType<typeof asUser>;
