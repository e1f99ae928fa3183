import {
  Agent,
  request,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import type { Logger } from "pino";
import type { Counter, Histogram } from "prom-client";

// RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

export interface ForwarderOptions {
  /** Which listener this is ("client" or "federation"), for logs and metrics. */
  listener: string;
  upstream: URL;
  /** Scheme the outside world used, for X-Forwarded-Proto. */
  scheme: "http" | "https";
  log: Logger;
  requests: Counter<"listener" | "method" | "status">;
  duration: Histogram<"listener">;
}

/** Forwards a request; `body`, when given, replaces the (already consumed) request body. */
export type Forwarder = ((req: IncomingMessage, res: ServerResponse, body?: Buffer) => void) & {
  agent: Agent;
};

/**
 * Passes one request to Synapse and its answer back, streaming both bodies (a large media upload or
 * download is never held whole in memory) and leaving long-polls (`/sync`) without a proxy timeout.
 * Synapse sees the client's address in X-Forwarded-For, as its listeners are `x_forwarded: true`.
 * A refusal or an unreachable homeserver is answered as a Matrix error.
 */
export function createForwarder(opts: ForwarderOptions): Forwarder {
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const forward = (req: IncomingMessage, res: ServerResponse, body?: Buffer): void => {
    const started = process.hrtime.bigint();
    const finish = (status: number): void => {
      opts.requests.inc({
        listener: opts.listener,
        method: methodLabel(req.method),
        status: `${String(status).charAt(0)}xx`,
      });
      opts.duration.observe({ listener: opts.listener }, Number(process.hrtime.bigint() - started) / 1e9);
    };
    // Only origin-form targets ("/path?query"): absolute-form or "*" would let a client aim the
    // proxy somewhere else, and Synapse serves nothing outside "/".
    if (!req.url?.startsWith("/") || req.url.startsWith("//")) {
      matrixError(res, 400, "M_UNRECOGNIZED", "Unsupported request target");
      finish(400);
      return;
    }
    const upstreamReq = request(
      {
        protocol: opts.upstream.protocol,
        hostname: opts.upstream.hostname,
        port: opts.upstream.port,
        method: req.method,
        path: req.url,
        headers: forwardedHeaders(req, opts.scheme, body),
        agent,
      },
      (upstreamRes) => {
        res.writeHead(upstreamRes.statusCode ?? 502, withoutHopByHop(upstreamRes.headers));
        upstreamRes.pipe(res);
        finish(upstreamRes.statusCode ?? 502);
      },
    );
    upstreamReq.setTimeout(0); // /sync long-polls for as long as the client asked
    upstreamReq.on("error", (err) => {
      if (res.headersSent) {
        res.destroy(err);
        return;
      }
      opts.log.warn({ err: err.message, listener: opts.listener }, "homeserver unreachable");
      matrixError(res, 502, "M_UNKNOWN", "The homeserver is not reachable right now; try again shortly");
      finish(502);
    });
    // A client that goes away must not leave the upstream request (or a /sync) running.
    res.on("close", () => {
      if (!res.writableFinished) upstreamReq.destroy();
    });
    if (body) upstreamReq.end(body);
    else req.pipe(upstreamReq);
  };
  return Object.assign(forward, { agent });
}

function forwardedHeaders(req: IncomingMessage, scheme: string, body?: Buffer): IncomingHttpHeaders {
  const headers = withoutHopByHop(req.headers);
  if (body) headers["content-length"] = String(body.length);
  // MedMesh is the first proxy: a client-supplied X-Forwarded-For is untrusted and replaced.
  headers["x-forwarded-for"] = req.socket.remoteAddress ?? "";
  headers["x-forwarded-proto"] = scheme;
  if (req.headers.host) headers["x-forwarded-host"] = req.headers.host;
  return headers;
}

function withoutHopByHop(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const listed = (headers.connection ?? "").split(",").map((h) => h.trim().toLowerCase());
  return Object.fromEntries(
    Object.entries(headers).filter(([name]) => !HOP_BY_HOP.has(name) && !listed.includes(name)),
  );
}

const METHODS = new Set(["GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH"]);
function methodLabel(method: string | undefined): string {
  return method && METHODS.has(method) ? method : "OTHER";
}

export function matrixError(
  res: ServerResponse,
  status: number,
  errcode: string,
  error: string,
  extra: Record<string, unknown> = {},
): void {
  sendJson(res, status, { errcode, error, ...extra });
}

export function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}
