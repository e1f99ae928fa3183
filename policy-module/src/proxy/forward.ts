import {
  Agent,
  request,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { pipeline } from "node:stream";
import type { Logger } from "pino";
import type { Counter, Histogram } from "prom-client";
import { bodyTimedOut, tooLarge, type Refusal, type ReplacementBody } from "./context.ts";
import { watchBodyIdle } from "./limits.ts";

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
  /** Hard cap on a streamed request body: crossing it cuts the request off with 413. */
  maxBodyBytes: number;
  /** A streamed request body that stalls this long (no byte arrives) is cut off with 408. */
  bodyIdleMs: number;
}

/**
 * Forwards a request; `body`, when given, replaces the (already consumed) request body; `upstream`,
 * when given, is the Synapse worker chosen for it (worker-router.ts) instead of the main process.
 */
export type Forwarder = ((
  req: IncomingMessage,
  res: ServerResponse,
  body?: ReplacementBody,
  upstream?: URL,
) => void) & {
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
  const forward = (
    req: IncomingMessage,
    res: ServerResponse,
    body?: ReplacementBody,
    upstream: URL = opts.upstream,
  ): void => {
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
        protocol: upstream.protocol,
        hostname: upstream.hostname,
        port: upstream.port,
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
    let cutOff = false;
    /** The client broke a limit mid-body: Synapse's half-sent request is dropped, the client told why. */
    const cut = (refusal: Refusal): void => {
      if (cutOff) return;
      cutOff = true;
      req.unpipe(upstreamReq);
      upstreamReq.destroy();
      if (!res.headersSent) finish(refusal.status);
      answerRefusal(req, res, refusal);
    };
    upstreamReq.on("error", (err) => {
      if (cutOff) return;
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
    // Nor a client that stops half-way through its body a request Synapse waits on forever.
    req.once("close", () => {
      if (req.complete) return;
      cutOff = true;
      upstreamReq.destroy();
    });
    if (Buffer.isBuffer(body)) upstreamReq.end(body);
    else if (body) {
      pipeline(body.open(), upstreamReq, (err) => {
        if (err && !res.headersSent) upstreamReq.destroy(err); // answered as unreachable above
      });
    } else {
      req.pipe(upstreamReq);
      let size = 0;
      req.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > opts.maxBodyBytes) cut(tooLarge(opts.maxBodyBytes));
      });
      watchBodyIdle(req, opts.bodyIdleMs, () => {
        cut(bodyTimedOut());
      });
    }
  };
  return Object.assign(forward, { agent });
}

function forwardedHeaders(req: IncomingMessage, scheme: string, body?: ReplacementBody): IncomingHttpHeaders {
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

/**
 * Answers a refusal and, when the request body has not been read to its end, closes the
 * connection after the answer (Node ends a `connection: close` response's socket once it is
 * sent): the unread bytes are neither read nor parsed as a next request.
 */
export function answerRefusal(req: IncomingMessage, res: ServerResponse, refusal: Refusal): void {
  if (res.headersSent) {
    if (!res.writableFinished) res.destroy();
    return;
  }
  if (!req.complete) res.setHeader("connection", "close");
  matrixError(res, refusal.status, refusal.errcode, refusal.message, refusal.extra);
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
