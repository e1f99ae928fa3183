import type { IncomingMessage } from "node:http";
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

export const forbidden = (reason: string): Refusal => new Refusal(403, "M_FORBIDDEN", reason);

/** An answer the proxy gives itself (e.g. a merged directory search). */
export interface OwnResponse {
  status: number;
  /** JSON, unless `contentType` is given: then a Buffer sent as it is. */
  body: unknown;
  contentType?: string;
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
  replacedBody: Buffer | undefined;
  #body: Promise<Buffer> | undefined;
  #requester: () => Promise<Requester | undefined>;

  constructor(
    req: IncomingMessage,
    url: URL,
    listener: "client" | "federation",
    requester: () => Promise<Requester | undefined>,
  ) {
    this.req = req;
    this.url = url;
    this.listener = listener;
    this.#requester = requester;
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

  body(limit: number): Promise<Buffer> {
    this.#body ??= readBody(this.req, limit);
    return this.#body;
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

function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? NaN);
  if (declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners("data");
        req.resume(); // drain, so the refusal can still be written on this connection
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    });
    req.once("end", () => {
      resolve(Buffer.concat(chunks));
    });
    req.once("error", reject);
  });
}

function tooLarge(limit: number): Refusal {
  return new Refusal(
    413,
    "M_TOO_LARGE",
    `The request body is larger than this server accepts (${String(limit)} bytes)`,
  );
}
