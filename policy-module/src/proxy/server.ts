import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import type { IncomingMessage, ServerResponse } from "node:http";
import { clientRules } from "./client-rules.ts";
import type { ProxyConfig } from "./config.ts";
import { ProxyContext, Refusal, tooLarge, type OwnResponse } from "./context.ts";
import { federationGate, type FederationRuleDeps } from "./federation-rules.ts";
import { compileEndpoints, endpointGuard } from "./endpoints.ts";
import { timClientRules } from "./tim-rules.ts";
import { isTim, type Profile } from "../rooms/profile.ts";
import { answerRefusal, createForwarder, sendJson, type Forwarder } from "./forward.ts";
import { createWorkerRouter } from "./worker-router.ts";
import { answerClientError, declaredLength, nonAsciiHeader } from "./limits.ts";
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
  membership?: FederationRuleDeps["membership"];
  /** MedMesh's own client API (`/_medmesh/…`), answered by the proxy for authenticated users. */
  medmeshClientRoutes?: readonly Route[];
  botUserId?: string;
  /** The organisation's rule profile (docs/tim-profile.md). */
  profile?: Profile;
  /** TI-M's insured persons (rooms/profile.ts); nobody when not given. */
  insured?: (userId: string) => boolean;
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
  const limits = config.limits;
  // The hard cap on any body, inspected or streamed: the largest limit that applies on the port.
  const bodyCap = {
    client: Math.max(limits.json_body_bytes, limits.media_body_bytes),
    federation: limits.federation_body_bytes,
  };
  const common = { log: deps.log, requests, duration, bodyIdleMs: limits.body_idle_timeout_ms };
  const forwardClient = createForwarder({
    ...common,
    listener: "client",
    upstream: clientUpstream,
    scheme: "http",
    maxBodyBytes: bodyCap.client,
  });
  const forwardFederation = createForwarder({
    ...common,
    listener: "federation",
    upstream: new URL(config.federation.upstream),
    scheme: "https",
    maxBodyBytes: bodyCap.federation,
  });
  // Sockets with a request in progress: a parse error there (mid-body) only closes the connection,
  // as an answer to that request may already be under way.
  const responding = new WeakSet<Duplex>();
  const requesters = createRequesterCache(clientUpstream);
  const limiter = createRateLimiter({
    perSecond: config.limits.requests_per_second,
    burst: config.limits.burst,
  });
  const profile = deps.profile ?? "medmesh";
  const routes = [
    ...(deps.medmeshClientRoutes ?? []),
    ...timClientRules({
      profile,
      supportPage: config.support_page,
      insured: deps.insured ?? (() => false),
      directory: deps.directory,
      upstream: clientUpstream,
      jsonLimit: config.limits.json_body_bytes,
    }),
    ...clientRules({
      config,
      profile,
      serverName: deps.serverName,
      trust: deps.trust,
      invites: deps.invites,
      directory: deps.directory,
      ...(deps.botUserId ? { botUserId: deps.botUserId } : {}),
      ...(deps.membership ? { knock: deps.membership } : {}),
      onStripped: (removed) => {
        for (const kind of removed) stripped.inc({ kind });
      },
    }),
  ];
  const workers = createWorkerRouter(config.workers);
  const endpoints = endpointGuard(
    deps.log,
    compileEndpoints(undefined, { sso: config.single_sign_on, tim: isTim(profile) }),
  );
  const gate = federationGate({
    serverName: deps.serverName,
    trust: deps.trust,
    bodyLimit: config.limits.federation_body_bytes,
    medmesh: deps.medmesh,
    ...(deps.membership ? { membership: deps.membership } : {}),
  });

  const handle =
    (
      listener: "client" | "federation",
      forward: Forwarder,
      decide: (ctx: ProxyContext) => Promise<OwnResponse | undefined>,
    ) =>
    (req: IncomingMessage, res: ServerResponse): void => {
      responding.add(req.socket);
      res.once("close", () => responding.delete(req.socket));
      const refuse = (refusal: Refusal): void => {
        refusals.inc({ listener, errcode: refusal.errcode });
        answerRefusal(req, res, refusal);
      };
      // Refused before anything else, so a request that only declares a huge body is answered
      // at once, never waits for bytes that will not come, and Synapse never waits for them either.
      if (declaredLength(req) > bodyCap[listener]) {
        refuse(tooLarge(bodyCap[listener]));
        return;
      }
      const oddHeader = nonAsciiHeader(req);
      if (oddHeader !== undefined) {
        refuse(badHeader(listener, oddHeader));
        return;
      }
      const url = requestUrl(req);
      if (!url) {
        forward(req, res); // the forwarder answers malformed targets itself
        return;
      }
      let requester: Promise<Requester | undefined> | undefined;
      const ctx = new ProxyContext(
        req,
        url,
        listener,
        () => {
          // A malformed credential is refused (401) by accessTokenOf, inside the promise.
          requester ??=
            listener === "federation"
              ? Promise.resolve(undefined) // servers sign requests; there are no access tokens here
              : (async () => {
                  const token = accessTokenOf(req, url);
                  return token === undefined
                    ? undefined
                    : requesters.whoami(token, url.searchParams.get("user_id") ?? undefined);
                })();
          return requester;
        },
        { bodyIdleMs: limits.body_idle_timeout_ms },
      );
      // Temporary files (spooled uploads) go whatever the outcome.
      res.once("close", () => void ctx.done());
      decide(ctx)
        .then(async (own) => {
          if (own) {
            if (!req.complete) res.setHeader("connection", "close"); // the unread rest is not read
            for (const [name, value] of Object.entries(own.headers ?? {})) res.setHeader(name, value);
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
          const userId = listener === "client" ? (await ctx.requester())?.userId : undefined;
          const worker = workers.pick({
            listener,
            method: ctx.method,
            rawPath: ctx.rawPath,
            req,
            ...(userId === undefined ? {} : { userId }),
          });
          forward(req, res, body, worker?.upstream);
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
          // An unread body is not read (nor parsed as a next request): the connection closes.
          refuse(refusal);
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
    // A TLS handshake is part of sending the headers: a stalled one is not held longer.
    handshakeTimeout: limits.headers_timeout_ms,
  };
  const timing = {
    // Node checks the headers timeout on this interval: it bounds how late a slow sender is cut off.
    connectionsCheckingInterval: Math.min(1000, Math.max(50, Math.floor(limits.headers_timeout_ms / 10))),
  };
  const edge = (listener: "client" | "federation", server: Server): Server => {
    server.headersTimeout = limits.headers_timeout_ms;
    server.on(
      "clientError",
      answerClientError(deps.log, listener, responding, (errcode) => {
        refusals.inc({ listener, errcode });
      }),
    );
    // `Expect: 100-continue` is answered only for a body the proxy would accept: a client
    // announcing too large a body gets 413 without being invited to send it.
    server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => {
      if (!(declaredLength(req) > bodyCap[listener])) res.writeContinue();
      server.emit("request", req, res);
    });
    return server;
  };
  const servers: Server[] = [];
  try {
    const clientServer = await listenOn(
      edge("client", createHttpServer(timing, client)),
      config.client.host,
      config.client.port,
    );
    servers.push(clientServer);
    const federationServer = await listenOn(
      edge("federation", createHttpsServer({ ...tls, ...timing }, federation)),
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

/** A header with bytes outside ASCII; in the credential it is a bad token (or signature). */
function badHeader(listener: "client" | "federation", header: string): Refusal {
  if (header !== "authorization") {
    return new Refusal(400, "M_UNKNOWN", `The ${header} header contains bytes outside ASCII`);
  }
  return listener === "client"
    ? new Refusal(401, "M_UNKNOWN_TOKEN", "Unknown or expired access token", { soft_logout: false })
    : new Refusal(401, "M_UNAUTHORIZED", "The Authorization header contains bytes outside ASCII");
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
  // Long uploads and long-polls are legitimate: no total request timeout. Slow header dribbling
  // (headersTimeout, set by the caller) and stalled bodies (the body idle timeout) are not.
  server.requestTimeout = 0;
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
