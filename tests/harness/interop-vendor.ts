import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  randomBytes,
  randomUUID,
  type KeyObject,
} from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import {
  contentDigest,
  REQUIRED_COMPONENTS,
  signRequest,
  verifyRequest,
} from "../../bridge/src/interop/index.ts";
import { cleanPng } from "../../policy-module/src/media/test-images.ts";
import { freePorts } from "./ports.ts";
import type { MatrixClient } from "matrix-js-sdk";
import { nextRoom, waitUntil } from "./wait.ts";

export interface ReceivedEvent {
  key: string;
  event: Record<string, unknown>;
  /** When the webhook had the whole request (epoch ms). */
  at: number;
}

const AVATAR_PATH = "/avatar.png";
const AVATAR = cleanPng();
/**
 * A protocol-level vendor for bridge tests: signs what it sends (RFC 9421, its own Ed25519 key),
 * checks MedMesh's signature on what its webhook receives, deduplicates by Idempotency-Key and
 * keeps the order of arrival. `down` makes the webhook answer 503; `refuse`, 400 (a refusal MedMesh
 * does not retry).
 */
export class TestVendor {
  readonly id: string;
  readonly keyId: string;
  readonly received: ReceivedEvent[] = [];
  /** Idempotency keys seen more than once (retries the webhook absorbed). */
  duplicates = 0;
  down = false;
  refuse = false;
  bridgeUrl = "";
  private readonly keys = generateKeyPairSync("ed25519");
  private medmeshKey: KeyObject | undefined;
  private server: Server | undefined;
  private port = 0;

  constructor(id = "refmsg") {
    this.id = id;
    this.keyId = `${id}-1`;
  }

  async start(): Promise<void> {
    [this.port] = (await freePorts(1)) as [number];
    this.server = createServer((req, res) => {
      if (req.method === "GET" && req.url === AVATAR_PATH) {
        res.writeHead(200, { "content-type": "image/png" }).end(AVATAR);
        return;
      }
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const at = Date.now();
        const body = Buffer.concat(chunks);
        if (this.down) {
          res.writeHead(503).end();
          return;
        }
        if (this.refuse) {
          res
            .writeHead(400, { "content-type": "application/json" })
            .end(JSON.stringify({ errcode: "M_BAD_JSON", error: "refused by the test vendor" }));
          return;
        }
        const verified = verifyRequest(
          {
            method: req.method ?? "",
            url: `http://127.0.0.1:${String(this.port)}${req.url ?? ""}`,
            headers: req.headers as Record<string, string>,
            body,
          },
          { key: () => this.medmeshKey, required: REQUIRED_COMPONENTS, maxSkewSeconds: 300 },
        );
        if (!verified.ok) {
          res
            .writeHead(401, { "content-type": "application/json" })
            .end(JSON.stringify({ errcode: "M_UNAUTHORIZED", error: verified.reason }));
          return;
        }
        const key = String(req.headers["idempotency-key"]);
        if (this.received.some((r) => r.key === key)) this.duplicates++;
        else this.received.push({ key, at, event: JSON.parse(body.toString()) as Record<string, unknown> });
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    const server = this.server;
    await new Promise<void>((r) => server.listen(this.port, "127.0.0.1", r));
  }

  /** The organisation setting that makes a bridge deliver to this vendor. */
  get setting(): Record<string, unknown> {
    return {
      id: this.id,
      key_id: this.keyId,
      public_key: this.keys.publicKey.export({ format: "jwk" }),
      webhook_url: `http://127.0.0.1:${String(this.port)}/webhook`,
      avatar_origins: [`http://127.0.0.1:${String(this.port)}`],
    };
  }

  /** A user picture this vendor serves (for `users[].avatar_url`), and its bytes. */
  get avatarUrl(): string {
    return `http://127.0.0.1:${String(this.port)}${AVATAR_PATH}`;
  }
  readonly avatar = AVATAR;

  /** Connects to an organisation's bridge: its URL and MedMesh's webhook signing key. */
  connect(bridgeUrl: string, signingKeyFile: string): void {
    this.bridgeUrl = bridgeUrl;
    this.medmeshKey = createPublicKey(createPrivateKey(readFileSync(signingKeyFile)));
  }

  /** One signed request to the bridge (GET: covering @method and @target-uri only). */
  async request(
    path: string,
    opts: { method?: string; body?: Buffer; contentType?: string; key?: string } = {},
  ) {
    const method = opts.method ?? "POST";
    const url = `${this.bridgeUrl}${path}`;
    const body = opts.body ?? Buffer.alloc(0);
    const get = method === "GET";
    const headers: Record<string, string> = get
      ? {}
      : {
          "content-type": opts.contentType ?? "application/json",
          "content-digest": contentDigest(body),
          "idempotency-key": opts.key ?? randomUUID(),
        };
    Object.assign(
      headers,
      signRequest(
        { method, url, headers, body },
        {
          keyId: this.keyId,
          privateKey: this.keys.privateKey,
          components: get ? ["@method", "@target-uri"] : REQUIRED_COMPONENTS,
          nonce: randomBytes(12).toString("hex"),
        },
      ),
    );
    return fetch(url, { method, headers, ...(get ? {} : { body }), signal: AbortSignal.timeout(10_000) });
  }

  /** Sends an event; answers other than 202 throw with the bridge's words. */
  async send(event: Record<string, unknown>, key?: string): Promise<void> {
    const res = await this.request("/_medmesh/interop/v1/events", {
      body: Buffer.from(JSON.stringify(event)),
      ...(key ? { key } : {}),
    });
    if (res.status !== 202) throw new Error(`the bridge answered ${String(res.status)}: ${await res.text()}`);
  }

  /**
   * Creates a conversation (`conversation.create` with these fields); each Matrix client joins the
   * portal it is invited to. Returns the portal's room ID.
   */
  async openConversation(fields: Record<string, unknown>, ...clients: MatrixClient[]): Promise<string> {
    const invited = clients.map((c) => nextRoom(c));
    await this.send({ type: "conversation.create", ...fields });
    const rooms = await Promise.all(invited);
    if (new Set(rooms).size !== 1)
      throw new Error(`the clients were invited to different rooms: ${rooms.join(", ")}`);
    const [roomId] = rooms as [string];
    for (const c of clients) await c.joinRoom(roomId);
    return roomId;
  }

  /** Sends until accepted, with the same Idempotency-Key each time (as a vendor's outbox does). */
  async sendReliably(event: Record<string, unknown>, key = randomUUID()): Promise<number> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.send(event, key);
        return attempt;
      } catch (err) {
        if (/answered 4\d\d/.test((err as Error).message)) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  /** Sends `texts` as messages of `sender`, in order, each until accepted; returns the retries. */
  async sendTexts(conversationId: string, sender: string, texts: readonly string[], gapMs = 0) {
    let retries = 0;
    for (const [i, text] of texts.entries()) {
      const message_id = `${conversationId}-${String(i + 1)}-${text}`;
      retries +=
        (await this.sendReliably({
          type: "message",
          conversation_id: conversationId,
          message_id,
          sender,
          text,
        })) - 1;
      if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
    }
    return retries;
  }

  /** The texts of the messages received (once each, in order of arrival) that match `pattern`. */
  texts(pattern: RegExp): string[] {
    return this.received
      .map((r) => r.event)
      .filter((e) => e.type === "message" && typeof e.text === "string" && pattern.test(e.text))
      .map((e) => String(e.text));
  }

  delivered(predicate: (e: Record<string, unknown>) => boolean, description: string, timeoutMs = 30_000) {
    return waitUntil(() => this.received.find((r) => predicate(r.event))?.event, description, timeoutMs);
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server)
      await new Promise<void>((r) =>
        server.close(() => {
          r();
        }),
      );
  }
}
