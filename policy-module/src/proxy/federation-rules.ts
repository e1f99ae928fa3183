import { forbidden, Refusal, type OwnResponse, type ProxyContext } from "./context.ts";
import { serverOf, type Decision, type TrustView } from "./policy.ts";
import { route, type Route } from "./router.ts";

export interface FederationRuleDeps {
  serverName: string;
  trust: TrustView;
  bodyLimit: number;
  /** MedMesh's own federation-side API (the directory's FHIR search), answered by the proxy. */
  medmesh: (ctx: ProxyContext, origin: string) => OwnResponse | Promise<OwnResponse>;
  /**
   * Whether another server's user may knock on or join a room here (the group directory's rules).
   * Asked at make_knock/make_join, so that the user's own server gets the reason; Synapse's module
   * decides again on the membership event itself.
   */
  membership?: (q: { user_id: string; room_id: string; membership: "knock" | "join" }) => Promise<Decision>;
}

export interface XMatrixAuth {
  origin: string;
  destination: string | undefined;
  key: string;
  sig: string;
}

/** `Authorization: X-Matrix origin="a.example",destination="b.example",key="ed25519:1",sig="…"`. */
export function parseXMatrix(header: string | undefined): XMatrixAuth | undefined {
  if (!header?.startsWith("X-Matrix ")) return undefined;
  const params = new Map<string, string>();
  for (const m of header.slice(9).matchAll(/([A-Za-z_]+)=("(?:[^"\\]|\\.)*"|[^,]*)/g)) {
    const [, name = "", raw = ""] = m;
    params.set(name.toLowerCase(), raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw);
  }
  const origin = params.get("origin");
  const key = params.get("key");
  const sig = params.get("sig");
  if (!origin || !key || !sig) return undefined;
  return { origin, destination: params.get("destination"), key, sig };
}

// Served without request signatures by every homeserver: its keys and its version (the endpoint
// table's `unsigned-federation` entries; endpoints.test.ts checks that the two agree).
export const UNAUTHENTICATED = /^\/_matrix\/(?:key\/v2\/(?:server|query)(?:\/.*)?|federation\/v1\/version)$/;

/**
 * The gate in front of Synapse's federation listener. A request must name its origin server
 * (X-Matrix), the origin must be on the trust list, and it must be addressed to us; Synapse then
 * checks the signature as usual.
 */
export function federationGate(d: FederationRuleDeps): {
  admit(ctx: ProxyContext): Promise<OwnResponse | undefined>;
} {
  const routes: Route[] = [
    route("PUT", String.raw`^/_matrix/federation/v[12]/invite/{}/{}`, async (ctx) => {
      const body = await ctx.json(d.bodyLimit);
      // v1 sends the event itself, v2 wraps it with the room version.
      const event = (typeof body.event === "object" && body.event !== null ? body.event : body) as {
        sender?: unknown;
      };
      // The invitee's permissions are decided by Synapse's module (federated_user_may_invite).
      const origin = parseXMatrix(ctx.req.headers.authorization)?.origin;
      if (typeof event.sender !== "string" || serverOf(event.sender) !== origin) {
        throw forbidden("The inviter does not belong to the sending server");
      }
      return undefined;
    }),
    route("GET", String.raw`^/_matrix/federation/v1/make_(knock|join)/{}/{}`, async (_ctx, params) => {
      const [kind, roomId = "", userId = ""] = params.map((p) => decodeURIComponent(p));
      if (!d.membership) return undefined;
      const decision = await d.membership({
        user_id: userId,
        room_id: roomId,
        membership: kind === "knock" ? "knock" : "join",
      });
      if (!decision.allowed) throw forbidden(decision.reason);
      return undefined;
    }),
  ];

  return {
    async admit(ctx) {
      const path = ctx.rawPath;
      if (UNAUTHENTICATED.test(path)) return undefined;
      const isFederation = path.startsWith("/_matrix/federation/") || path.startsWith("/_matrix/media/");
      const isMedMesh = path.startsWith("/_medmesh/");
      if (!isFederation && !isMedMesh) {
        throw new Refusal(404, "M_UNRECOGNIZED", "Not a federation endpoint");
      }
      const auth = parseXMatrix(ctx.req.headers.authorization);
      if (!auth) throw new Refusal(401, "M_UNAUTHORIZED", "Federation requests must be signed (X-Matrix)");
      if (auth.destination !== undefined && auth.destination !== d.serverName) {
        throw new Refusal(401, "M_UNAUTHORIZED", `This server is ${d.serverName}, not ${auth.destination}`);
      }
      if (!d.trust.isTrusted(auth.origin)) {
        throw forbidden(`${auth.origin} is not an organisation on this network's trust list`);
      }
      if (isMedMesh) return d.medmesh(ctx, auth.origin);
      for (const r of routes) {
        if (!r.methods.includes(ctx.method)) continue;
        const m = r.pattern.exec(path);
        if (m) return r.handle(ctx, m.slice(1));
      }
      return undefined;
    },
  };
}
