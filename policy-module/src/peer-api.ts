import type { JsonWebKey } from "node:crypto";
import { parseXMatrix, Refusal, type OwnResponse, type ProxyContext } from "./proxy/index.ts";
import { verifyRequest } from "./trust/request-signing.ts";

export interface PeerRoute {
  pattern: RegExp;
  /** GET unless said otherwise; a POST's JSON body is covered by the request signature. */
  method?: "GET" | "POST";
  handle(ctx: ProxyContext, params: string[]): OwnResponse | Promise<OwnResponse>;
}

const MAX_PEER_BODY = 64 * 1024;

/**
 * MedMesh's own API towards trusted peer organisations, on the federation port (`/_medmesh/…`).
 * The proxy has already checked that the origin is on the trust list; here the request signature
 * must verify against that origin's organisation key from the list (over the body too, for the
 * routes that take a POST: revocation notices).
 */
export function createPeerApi(deps: {
  serverName: string;
  attestationKeys(server: string): JsonWebKey[];
  routes: readonly PeerRoute[];
}): (ctx: ProxyContext, origin: string) => Promise<OwnResponse> {
  return async (ctx, origin) => {
    const auth = parseXMatrix(ctx.req.headers.authorization);
    const matched = deps.routes.map((r) => ({ r, m: r.pattern.exec(ctx.rawPath) })).find((x) => x.m !== null);
    const method = matched?.r.method ?? "GET";
    // The body is read (bounded) before the signature is checked, because the signature covers it.
    const content = ctx.method === "POST" && method === "POST" ? await ctx.json(MAX_PEER_BODY) : undefined;
    const request = {
      method: ctx.method,
      uri: ctx.req.url ?? "",
      origin,
      destination: deps.serverName,
      ...(content === undefined ? {} : { content }),
    };
    if (!auth || !verifyRequest(request, auth, deps.attestationKeys(origin))) {
      throw new Refusal(
        401,
        "M_UNAUTHORIZED",
        `The request is not signed with a key the trust list holds for ${origin}`,
      );
    }
    if (ctx.method !== method) throw new Refusal(405, "M_UNRECOGNIZED", `Only ${method} is served here`);
    for (const { r, m } of matched ? [matched] : []) {
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
