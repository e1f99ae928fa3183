import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import type { IncomingMessage, ServerResponse } from "node:http";
import { clientRules } from "./client-rules.ts";
import type { ProxyConfig } from "./config.ts";
import { ProxyContext, Refusal, type OwnResponse } from "./context.ts";
import { federationGate, type FederationRuleDeps } from "./federation-rules.ts";
import { endpointGuard } from "./endpoints.ts";
import { createForwarder, matrixError, sendJson, type Forwarder } from "./forward.ts";
import type { DirectoryGate, InviteGate, TrustView } from "./policy.ts";
import { createRateLimiter } from "./rate-limit.ts";
import { accessTokenOf, createRequesterCache, type Requester } from "./requester.ts";
import { findRoute, isAmbiguousPath, type Route } from "./router.ts";
import { ApiError } from "@medmesh/common";

export interface RunningProxy {
  clientUrl: string;
  federationUrl: string;
  stop(): Promise<void>;
}

export interface ProxyDeps {
  log: Logger;
  metrics: Registry;
  serverName: string;
  trust: TrustView;
  invites: InviteGate;
  directory: DirectoryGate;
  /** MedMesh's federation-side API (directory FHIR search, attestations) for a trusted origin. */
  medmesh: FederationRuleDeps["medmesh"];
  /** MedMesh's own client API (`/_medmesh/…`), answered by the proxy for authenticated users. */
  medmeshClientRoutes?: readonly Route[];
  botUserId?: string;
}

/**
 * The enforcement point in front of Synapse: one listener for the client-server API and one (TLS)
 * for federation. Every request passes the policy rules first; refused requests are answered
 * with a Matrix error and never reach Synapse; the rest stream through to Synapse's loopback
 * listeners (bodies are buffered only where a rule must read them).
 */
export async function startProxy(
  config: ProxyConfig,
  clientUpstream: URL,
  deps: ProxyDeps,
): Promise<RunningProxy> {
  const requests = new Counter({
    name: "medmesh_proxy_requests_total",
    help: "Requests through the MedMesh proxy, by listener, method and status class",
    labelNames: ["listener", "method", "status"] as const,
    registers: [deps.metrics],
  });
  const duration = new Histogram({
    name: "medmesh_proxy_response_seconds",
    help: "Time until the homeserver's response headers passed the proxy",
    labelNames: ["listener"] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [deps.metrics],
  });
  const refusals = new Counter({
    name: "medmesh_proxy_refusals_total",
    help: "Requests the proxy refused before they reached Synapse, by listener and Matrix error code",
    labelNames: ["listener", "errcode"] as const,
    registers: [deps.metrics],
  });
  const stripped = new Counter({
    name: "medmesh_proxy_media_metadata_stripped_total",
    help: "Image uploads from which the proxy removed metadata, by kind of metadata",
    labelNames: ["kind"] as const,
    registers: [deps.metrics],
  });
  const common = { log: deps.log, requests, duration };
  const forwardClient = createForwarder({
    ...common,
    listener: "client",
    upstream: clientUpstream,
    scheme: "http",
  });
  const forwardFederation = createForwarder({
    ...common,
    listener: "federation",
    upstream: new URL(config.federation.upstream),
    scheme: "https",
  });
  const requesters = createRequesterCache(clientUpstream);
  const limiter = createRateLimiter({
    perSecond: config.limits.requests_per_second,
    burst: config.limits.burst,
  });
  const routes = [
    ...(deps.medmeshClientRoutes ?? []),
    ...clientRules({
      config,
      serverName: deps.serverName,
      trust: deps.trust,
      invites: deps.invites,
      directory: deps.directory,
      ...(deps.botUserId ? { botUserId: deps.botUserId } : {}),
      onStripped: (removed) => {
        for (const kind of removed) stripped.inc({ kind });
      },
    }),
  ];
  const endpoints = endpointGuard(deps.log);
  const gate = federationGate({
    serverName: deps.serverName,
    trust: deps.trust,
    bodyLimit: config.limits.federation_body_bytes,
    medmesh: deps.medmesh,
  });

  const handle =
    (
      listener: "client" | "federation",
      forward: Forwarder,
      decide: (ctx: ProxyContext) => Promise<OwnResponse | undefined>,
    ) =>
    (req: IncomingMessage, res: ServerResponse): void => {
      const url = requestUrl(req);
      if (!url) {
        forward(req, res); // the forwarder answers malformed targets itself
        return;
      }
      let requester: Promise<Requester | undefined> | undefined;
      const ctx = new ProxyContext(req, url, listener, () => {
        const token = accessTokenOf(req, url);
        requester ??=
          token === undefined
            ? Promise.resolve(undefined)
            : requesters.whoami(token, url.searchParams.get("user_id") ?? undefined);
        return requester;
      });
      decide(ctx)
        .then(async (own) => {
          if (own) {
            if (own.contentType && Buffer.isBuffer(own.body)) {
              res.writeHead(own.status, {
                "content-type": own.contentType,
                "content-length": own.body.length,
              });
              res.end(own.body);
            } else sendJson(res, own.status, own.body);
            requests.inc({
              listener,
              method: req.method ?? "OTHER",
              status: `${String(own.status).charAt(0)}xx`,
            });
            return;
          }
          const body = ctx.replacedBody ?? (ctx.bodyRead ? await ctx.body(Infinity) : undefined);
          forward(req, res, body);
        })
        .catch((err: unknown) => {
          const refusal =
            err instanceof Refusal
              ? err
              : err instanceof ApiError
                ? new Refusal(err.status, err.errcode, err.message)
                : (deps.log.error({ err, listener, path: url.pathname }, "policy rule failed"),
                  new Refusal(
                    503,
                    "M_UNKNOWN",
                    "The request could not be checked against policy; try again shortly",
                  ));
          refusals.inc({ listener, errcode: refusal.errcode });
          if (!res.headersSent) {
            matrixError(res, refusal.status, refusal.errcode, refusal.message, refusal.extra);
          }
          // An unread body must not be parsed as the next request on this connection.
          if (!req.complete) req.resume();
        });
    };

  const client = handle("client", forwardClient, async (ctx) => {
    if (isAmbiguousPath(ctx.rawPath)) {
      throw new Refusal(400, "M_UNRECOGNIZED", "Unsupported request path");
    }
    endpoints.admit(ctx); // default deny: only endpoints in the table (endpoint-table.ts) go on
    const token = accessTokenOf(ctx.req, ctx.url);
    const requester = await ctx.requester();
    if (token !== undefined && !requester) {
      throw new Refusal(401, "M_UNKNOWN_TOKEN", "Unknown or expired access token", { soft_logout: false });
    }
    const verdict = limiter.take(requester?.userId ?? `addr:${ctx.req.socket.remoteAddress ?? ""}`);
    if (!verdict.allowed) {
      throw new Refusal(429, "M_LIMIT_EXCEEDED", "Too many requests; slow down", {
        retry_after_ms: verdict.retryAfterMs,
      });
    }
    const found = findRoute(routes, ctx.method, ctx.rawPath);
    return found ? found.route.handle(ctx, found.params) : undefined;
  });
  const federation = handle("federation", forwardFederation, async (ctx) => {
    if (isAmbiguousPath(ctx.rawPath)) {
      throw new Refusal(400, "M_UNRECOGNIZED", "Unsupported request path");
    }
    endpoints.admit(ctx);
    return gate.admit(ctx);
  });

  const tls = {
    cert: readFileSync(config.federation.tls.certificate),
    key: readFileSync(config.federation.tls.private_key),
  };
  const servers: Server[] = [];
  try {
    const clientServer = await listenOn(createHttpServer(client), config.client.host, config.client.port);
    servers.push(clientServer);
    const federationServer = await listenOn(
      createHttpsServer(tls, federation),
      config.federation.host,
      config.federation.port,
    );
    servers.push(federationServer);
    deps.log.info(
      { client: address(clientServer), federation: address(federationServer) },
      "proxy listening",
    );
    return {
      clientUrl: `http://${address(clientServer)}`,
      federationUrl: `https://${address(federationServer)}`,
      stop: async () => {
        await Promise.all(servers.map(close));
        for (const f of [forwardClient, forwardFederation]) f.agent.destroy();
      },
    };
  } catch (err) {
    await Promise.all(servers.map(close));
    throw err;
  }
}

/** Origin-form targets only ("/path?query"); anything else is left to the forwarder to refuse. */
function requestUrl(req: IncomingMessage): URL | undefined {
  if (!req.url?.startsWith("/") || req.url.startsWith("//")) return undefined;
  try {
    return new URL(req.url, "http://proxy.invalid");
  } catch {
    return undefined;
  }
}

async function listenOn(server: Server, host: string, port: number): Promise<Server> {
  // Long uploads and long-polls are legitimate; slow header dribbling is not.
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}

function address(server: Server): string {
  const a = server.address() as AddressInfo;
  return a.family === "IPv6" ? `[${a.address}]:${String(a.port)}` : `${a.address}:${String(a.port)}`;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => {
      resolve();
    });
    server.closeAllConnections();
  });
}
