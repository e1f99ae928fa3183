import type { IncomingMessage } from "node:http";
import type { Readable } from "node:stream";
import { watchBodyIdle } from "./limits.ts";
import { spoolBody, type Spooled } from "./spool.ts";
import type { Requester } from "./requester.ts";

/** A refusal by the proxy, answered as a Matrix error; the homeserver never sees the request. */
export class Refusal extends Error {
  override name = "Refusal";
  readonly status: number;
  readonly errcode: string;
  readonly extra: Record<string, unknown>;
  constructor(status: number, errcode: string, reason: string, extra: Record<string, unknown> = {}) {
    super(reason);
    this.status = status;
    this.errcode = errcode;
    this.extra = extra;
  }
}

export const tooLarge = (limit: number): Refusal =>
  new Refusal(
    413,
    "M_TOO_LARGE",
    `The request body is larger than this server accepts (${String(limit)} bytes)`,
  );

export const bodyTimedOut = (): Refusal =>
  new Refusal(408, "M_UNKNOWN", "The request body stalled; the connection was closed");

export const forbidden = (reason: string): Refusal => new Refusal(403, "M_FORBIDDEN", reason);

/** An answer the proxy gives itself (e.g. a merged directory search). */
export interface OwnResponse {
  status: number;
  /** JSON, unless `contentType` is given: then a Buffer sent as it is. */
  body: unknown;
  contentType?: string;
  /** Further response headers (the console's cookie, caching and content-security headers). */
  headers?: Record<string, string | string[]>;
}

/** A rewritten body that is not held in memory (a spooled upload): `length` bytes from `open()`. */
export interface StreamedBody {
  readonly length: number;
  open(): Readable;
}

/** What is forwarded instead of the original body: bytes in memory, or a stream of known length. */
export type ReplacementBody = Buffer | StreamedBody;

export interface ContextOptions {
  /** A body a rule reads that stalls this long is refused with 408 (see limits.ts). */
  bodyIdleMs: number;
}

/**
 * One request as the policy rules see it. The body is read only when a rule asks for it
 * (bounded by `limit`); everything else streams through untouched.
 */
export class ProxyContext {
  readonly req: IncomingMessage;
  readonly url: URL;
  readonly listener: "client" | "federation";
  /** What will be forwarded instead of the original body, when a rule rewrote it. */
  replacedBody: ReplacementBody | undefined;
  #body: Promise<Buffer> | undefined;
  #requester: () => Promise<Requester | undefined>;
  #options: ContextOptions;
  #cleanups: (() => Promise<void>)[] = [];

  constructor(
    req: IncomingMessage,
    url: URL,
    listener: "client" | "federation",
    requester: () => Promise<Requester | undefined>,
    options: ContextOptions,
  ) {
    this.req = req;
    this.url = url;
    this.listener = listener;
    this.#requester = requester;
    this.#options = options;
  }

  get bodyIdleMs(): number {
    return this.#options.bodyIdleMs;
  }

  /** Registers what must be undone when the request is over, whatever its outcome (temp files). */
  onDone(cleanup: () => Promise<void>): void {
    this.#cleanups.push(cleanup);
  }

  /** Runs the registered cleanups; called once the answer has been sent or the request failed. */
  async done(): Promise<void> {
    const cleanups = this.#cleanups.splice(0);
    await Promise.allSettled(cleanups.map((c) => c()));
  }

  /** The path exactly as sent (URL parsing would resolve dot segments Synapse never sees resolved). */
  get rawPath(): string {
    return (this.req.url ?? "/").split("?")[0] ?? "/";
  }

  get method(): string {
    return this.req.method ?? "GET";
  }

  /** The authenticated user of a client request; undefined for anonymous requests. */
  requester(): Promise<Requester | undefined> {
    return this.#requester();
  }

  async requireRequester(): Promise<Requester> {
    const r = await this.requester();
    if (!r) throw new Refusal(401, "M_MISSING_TOKEN", "This request needs an access token");
    return r;
  }

  get bodyRead(): boolean {
    return this.#body !== undefined;
  }

  /** The whole body, in memory; refused with 413 past `limit`, with 408 when it stalls. */
  body(limit: number): Promise<Buffer> {
    this.#body ??= readBody(this.req, limit, this.#options.bodyIdleMs);
    return this.#body;
  }

  /**
   * The whole body in a temporary file, deleted when the request is over: for bodies too large
   * to hold in memory. Refused like `body()`. A rule that spools must set `replacedBody`.
   */
  spool(limit: number): Promise<Spooled> {
    if (this.#body) return Promise.reject(new Error("the request body was already read"));
    const spooled = spoolBody(this.req, limit, this.#options.bodyIdleMs, (c) => {
      this.onDone(c);
    });
    // Consumed: body() must not wait for a stream that is now going to the file.
    this.#body = spooled.then(() => Promise.reject(new Error("the request body was spooled")));
    this.#body.catch(() => undefined);
    return spooled;
  }

  async json(limit: number): Promise<Record<string, unknown>> {
    const raw = await this.body(limit);
    let parsed: unknown;
    try {
      parsed = JSON.parse(raw.toString("utf8"));
    } catch {
      throw new Refusal(400, "M_NOT_JSON", "The request body is not valid JSON");
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
      throw new Refusal(400, "M_BAD_JSON", "The request body must be a JSON object");
    }
    return parsed as Record<string, unknown>;
  }

  replaceJson(value: unknown): void {
    this.replacedBody = Buffer.from(JSON.stringify(value));
  }
}

function readBody(req: IncomingMessage, limit: number, idleMs: number): Promise<Buffer> {
  // A declared length over the limit is refused before a byte is read.
  const declared = Number(req.headers["content-length"] ?? NaN);
  if (declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const fail = (err: Error): void => {
      stopIdle();
      req.off("data", onData);
      req.pause(); // the refusal closes the connection; the rest is never read
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) fail(tooLarge(limit));
      else chunks.push(chunk);
    };
    req.on("data", onData);
    const stopIdle = watchBodyIdle(req, idleMs, () => {
      fail(bodyTimedOut());
    });
    req.once("end", () => {
      resolve(Buffer.concat(chunks));
    });
    req.once("error", fail);
    req.once("close", () => {
      if (!req.complete) fail(new Refusal(400, "M_UNKNOWN", "The request body was cut short"));
    });
  });
}
