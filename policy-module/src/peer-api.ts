import type { JsonWebKey } from "node:crypto";
import { parseXMatrix, Refusal, type OwnResponse, type ProxyContext } from "./proxy/index.ts";
import { verifyRequest } from "./trust/request-signing.ts";

export interface PeerRoute {
  pattern: RegExp;
  handle(ctx: ProxyContext, params: string[]): OwnResponse | Promise<OwnResponse>;
}

/**
 * MedMesh's own API towards trusted peer organisations, on the federation port (`/_medmesh/…`).
 * The proxy has already checked that the origin is on the trust list; here the request signature
 * must verify against that origin's organisation key from the list.
 */
export function createPeerApi(deps: {
  serverName: string;
  attestationKeys(server: string): JsonWebKey[];
  routes: readonly PeerRoute[];
}): (ctx: ProxyContext, origin: string) => Promise<OwnResponse> {
  return async (ctx, origin) => {
    const auth = parseXMatrix(ctx.req.headers.authorization);
    const request = { method: ctx.method, uri: ctx.req.url ?? "", origin, destination: deps.serverName };
    if (!auth || !verifyRequest(request, auth, deps.attestationKeys(origin))) {
      throw new Refusal(
        401,
        "M_UNAUTHORIZED",
        `The request is not signed with a key the trust list holds for ${origin}`,
      );
    }
    if (ctx.method !== "GET") throw new Refusal(405, "M_UNRECOGNIZED", "Only GET is served here");
    for (const r of deps.routes) {
      const m = r.pattern.exec(ctx.rawPath);
      if (!m) continue;
      try {
        return await r.handle(
          ctx,
          m.slice(1).map((p) => decodeURIComponent(p)),
        );
      } catch (err) {
        if (err instanceof URIError) throw new Refusal(400, "M_UNRECOGNIZED", "Badly encoded path");
        throw err;
      }
    }
    throw new Refusal(404, "M_UNRECOGNIZED", "Unknown MedMesh federation endpoint");
  };
}
