import { MatrixRequestError } from "./accounts.ts";

export interface AsUserOptions {
  /** Act through one of the user's devices (appservice device masquerading). */
  deviceId?: string;
  /** A raw body (e.g. a media upload) instead of JSON. */
  raw?: { data: Buffer; contentType: string };
  timeoutMs?: number;
  /** Cancels the request (e.g. a long-poll when the service stops). */
  signal?: AbortSignal;
}

/** The client API as one of the appservice's users (`?user_id=` assertion with the as_token). */
export function asUser(homeserverUrl: string, asToken: string, userId: string) {
  return async <T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
    opts: AsUserOptions = {},
  ): Promise<T> => {
    const url = new URL(path, homeserverUrl);
    url.searchParams.set("user_id", userId);
    if (opts.deviceId !== undefined) url.searchParams.set("device_id", opts.deviceId);
    const res = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${asToken}`,
        "content-type": opts.raw?.contentType ?? "application/json",
      },
      ...(opts.raw ? { body: opts.raw.data } : body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: opts.signal
        ? AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs ?? 30_000)])
        : AbortSignal.timeout(opts.timeoutMs ?? 30_000),
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
