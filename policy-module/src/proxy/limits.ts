import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import type { Logger } from "pino";

/**
 * The proxy's network edge: sizes and timeouts enforced on the connection itself, before (and
 * while) a body is read. A refusal that leaves body bytes unread closes the connection, so those
 * bytes are never parsed as the next request and never cost a read.
 */

/** The declared Content-Length; NaN when there is none (chunked, or no body). */
export function declaredLength(req: IncomingMessage): number {
  const header = req.headers["content-length"];
  return header === undefined ? NaN : Number(header);
}

/**
 * The first header whose value has bytes outside printable ASCII (Node passes 0x80-0xFF through
 * as latin1; it refuses control bytes itself). Synapse decodes headers such as an upload's
 * Content-Type as ASCII and fails with a 500 on anything else, and no client needs those bytes.
 */
export function nonAsciiHeader(req: IncomingMessage): string | undefined {
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (/[^\t\x20-\x7e]/.test(raw[i + 1] ?? "")) return (raw[i] ?? "").toLowerCase();
  }
  return undefined;
}

/**
 * Calls `onIdle` when no body byte arrived for `ms` while the proxy was ready to read: a stalled
 * upload is cut off, a long one that keeps moving is not (an idle timeout, not a total cap). A
 * body paused by the proxy itself (Synapse applying backpressure) is not the client's fault, so
 * the timer is re-armed then. Start it when the body starts being consumed: it listens to `data`.
 * Returns a function that stops it.
 */
export function watchBodyIdle(req: IncomingMessage, ms: number, onIdle: () => void): () => void {
  if (req.complete || ms <= 0) return () => undefined;
  const check = (): void => {
    if (req.complete) return;
    if (req.readableFlowing === false) timer.refresh();
    else onIdle();
  };
  const timer = setTimeout(check, ms);
  const progress = (): void => {
    timer.refresh();
  };
  const stop = (): void => {
    clearTimeout(timer);
    req.off("data", progress);
  };
  req.on("data", progress);
  req.once("end", stop);
  req.once("close", stop);
  return stop;
}

/**
 * Server `clientError` handler: what Node refuses before a request exists (headers not complete
 * within `headersTimeout`, headers too large, unparsable HTTP) answered as a Matrix error instead
 * of Node's bare status line. `responding` holds the sockets with a request in progress: there
 * nothing may be written but that request's own answer; the connection is only closed.
 */
export function answerClientError(
  log: Logger,
  listener: string,
  responding: WeakSet<Duplex>,
  onRefused: (errcode: string) => void,
): (err: Error & { code?: string }, socket: Duplex) => void {
  return (err, socket) => {
    if (err.code === "ECONNRESET" || !socket.writable || responding.has(socket)) {
      socket.destroy();
      return;
    }
    const [status, reason, error] =
      err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [408, "Request Timeout", "The request headers were not sent in time"]
        : err.code === "HPE_HEADER_OVERFLOW"
          ? [431, "Request Header Fields Too Large", "The request headers are too large"]
          : [400, "Bad Request", "Malformed HTTP request"];
    const errcode = status === 408 ? "M_UNKNOWN" : "M_UNRECOGNIZED";
    log.debug({ listener, code: err.code }, "malformed or slow request refused");
    onRefused(errcode);
    const body = JSON.stringify({ errcode, error });
    socket.end(
      `HTTP/1.1 ${String(status)} ${reason}\r\nconnection: close\r\ncontent-type: application/json\r\n` +
        `content-length: ${String(Buffer.byteLength(body))}\r\n\r\n${body}`,
    );
  };
}
