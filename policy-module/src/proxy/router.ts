import { Refusal, type OwnResponse, type ProxyContext } from "./context.ts";

export interface Route {
  methods: readonly string[];
  /** Matched against the raw path, as Synapse matches its own routes; groups are URL-decoded. */
  pattern: RegExp;
  handle(ctx: ProxyContext, params: string[]): Promise<OwnResponse | undefined>;
}

/** Client API versions Synapse serves the same endpoint under. */
export const CLIENT = String.raw`^/_matrix/client/(?:r0|v3|unstable)`;
export const MEDIA = String.raw`^/_matrix/media/(?:r0|v3|v1)`;
const SEGMENT = "([^/]+)";
export const route = (methods: string | readonly string[], path: string, handle: Route["handle"]): Route => ({
  methods: typeof methods === "string" ? [methods] : methods,
  pattern: new RegExp(path.replaceAll("{}", SEGMENT) + "$"),
  handle,
});

export function findRoute(
  routes: readonly Route[],
  method: string,
  path: string,
): { route: Route; params: string[] } | undefined {
  for (const r of routes) {
    if (!r.methods.includes(method)) continue;
    const m = r.pattern.exec(path);
    if (!m) continue;
    try {
      return { route: r, params: m.slice(1).map((p) => decodeURIComponent(p)) };
    } catch {
      throw new Refusal(400, "M_UNRECOGNIZED", "The request path is not correctly URL-encoded");
    }
  }
  return undefined;
}

/**
 * Endpoints one of whose segments is an opaque ID that may itself contain "/", sent as %2F: a
 * dehydrated device's ID is unpadded base64 (MSC3814), and it is listed and deleted as a device.
 * Synapse splits the raw path on "/" before decoding, as the proxy's own matching does, so an
 * encoded slash there is read as part of the one segment by both.
 */
const SLASH_IN_SEGMENT = [
  /^\/_matrix\/client\/unstable\/org\.matrix\.msc3814\.v1\/dehydrated_device\/[^/]+\/events$/,
  /^\/_matrix\/client\/(r0|v3)\/devices\/[^/]+$/,
];

/**
 * Paths Synapse would read differently from the proxy are refused outright: dot segments,
 * empty segments, backslashes, encoded dots, encoded slashes (except inside the opaque ID segment
 * of SLASH_IN_SEGMENT), control characters, broken encoding.
 */
export function isAmbiguousPath(path: string): boolean {
  try {
    decodeURIComponent(path); // broken percent-encoding or invalid UTF-8
  } catch {
    return true;
  }
  return (
    /(^|\/)\.{1,2}(\/|$)/.test(path) ||
    path.includes("//") ||
    /%(2e|5c|00)/i.test(path) ||
    (/%2f/i.test(path) && !SLASH_IN_SEGMENT.some((r) => r.test(path))) ||
    // eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
    /[\\\u0000-\u001f\u007f]/.test(path)
  );
}
