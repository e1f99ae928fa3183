import {
  createPublicKey,
  generateKeyPairSync,
  KeyObject,
  randomBytes,
  randomUUID,
  type JsonWebKey,
} from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import express from "express";
import { EVENTS_PATH, MEDIA_PATH, REQUIRED_COMPONENTS } from "../interop/server.ts";
import { contentDigest, signRequest, verifyRequest } from "../interop/signatures.ts";
import { CheckFailed, MAX_SKEW_SECONDS, waitFor, type Check, type Received } from "./kit-common.ts";
import { senderChecks } from "./sender-checks.ts";

/**
 * The interop conformance kit: plays MedMesh against a vendor's implementation. Towards the
 * vendor's webhook it sends correct and deliberately wrong requests; on its own port it serves
 * files for the vendor to fetch and, with a trigger, receives what the vendor sends (answering
 * each new Idempotency-Key 503 once, to see the retry). See bridge/src/conformance/README.md.
 */

export interface CheckResult {
  name: string;
  ok: boolean;
  detail: string;
}

export interface KitOptions {
  /** Where the kit listens (default 127.0.0.1:0). */
  listen?: { host: string; port: number };
  /** How the vendor reaches the kit, when not the listen address (signatures cover the exact URI). */
  publicUrl?: string;
  /** MedMesh's signing key the vendor has configured; a fresh one when absent. */
  medmesh?: { keyId: string; privateKey: KeyObject };
}

export interface TargetOptions {
  /** The vendor's webhook URL, exactly as MedMesh would be configured with it. */
  webhook: string;
  vendorKeyId: string;
  vendorPublicKey: JsonWebKey | KeyObject;
  /** The vendor's trigger endpoint (README: the trigger contract); enables the sender checks. */
  trigger?: string;
  /** One of the vendor's user IDs, made a member of the kit's conversation. */
  vendorUser?: string;
  /** How long to wait for what the vendor does on its own: a download, a retry (default 30 s). */
  timeoutMs?: number;
  /** Called as each check finishes. */
  onResult?: (result: CheckResult) => void;
}

export interface ConformanceKit {
  /** The kit's base URL: the vendor's "MedMesh URL". */
  url: string;
  medmeshKeyId: string;
  /** The public JWK the vendor must configure as MedMesh's key. */
  medmeshPublicKey: JsonWebKey;
  run(target: TargetOptions): Promise<{ results: CheckResult[] }>;
  close(): Promise<void>;
}

const MATRIX_SERVER = "conformance.medmesh.test";

/** An answer's status and errcode, as a check reports it. */
interface Answer {
  status: number;
  errcode: string | undefined;
  error: string | undefined;
  text: string;
}

const describe = (a: Answer): string =>
  a.errcode
    ? `${String(a.status)} ${a.errcode}${a.error ? ` (${a.error})` : ""}`
    : `${String(a.status)} ${a.text.slice(0, 200)}`.trim();

/** Starts the kit's own endpoints (files, events) and returns a handle to run the checks with. */
export async function startConformanceKit(opts: KitOptions = {}): Promise<ConformanceKit> {
  const medmesh = opts.medmesh ?? {
    keyId: `medmesh-conformance-${randomBytes(3).toString("hex")}`,
    privateKey: generateKeyPairSync("ed25519").privateKey,
  };
  if (medmesh.privateKey.asymmetricKeyType !== "ed25519" || medmesh.privateKey.type !== "private")
    throw new Error("medmesh.privateKey: an Ed25519 private key is required");
  const medmeshPublicKey = createPublicKey(medmesh.privateKey).export({ format: "jwk" });

  const received: Received[] = [];
  const files = new Map<string, { data: Buffer; contentType: string }>();
  const attemptsByKey = new Map<string, number>();
  const seenNonces = new Set<string>();
  let vendorKey: { keyId: string; key: KeyObject } | undefined;
  let base = opts.publicUrl?.replace(/\/+$/, "") ?? "";

  const app = express();
  app.disable("x-powered-by");
  app.use(express.raw({ type: () => true, limit: "25mb" }));
  app.use((req, res) => {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    const r: Received = {
      method: req.method,
      url: `${base}${req.originalUrl}`,
      path: req.path,
      headers: Object.fromEntries(
        Object.entries(req.headers).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : (v ?? "")]),
      ),
      body,
      at: Date.now(),
      status: 0,
    };
    received.push(r);
    const answer = (status: number, json: unknown): void => {
      r.status = status;
      res.status(status).json(json);
    };
    // Like MedMesh: the vendor's signature, with a nonce never seen before.
    const authenticate = (required: readonly string[]): string | undefined => {
      if (!vendorKey) return "the kit is not running checks";
      const key = vendorKey;
      const v = verifyRequest(
        { method: r.method, url: r.url, headers: r.headers, body },
        {
          key: (id) => (id === key.keyId ? key.key : undefined),
          required,
          maxSkewSeconds: MAX_SKEW_SECONDS,
        },
      );
      if (!v.ok) return v.reason;
      if (!v.nonce) return "the signature must carry a nonce";
      if (seenNonces.has(v.nonce)) return "this nonce was used before (a replay)";
      seenNonces.add(v.nonce);
      return undefined;
    };
    if (req.method === "GET" && req.path.startsWith(`${MEDIA_PATH}/`)) {
      const refused = authenticate(["@method", "@target-uri"]);
      const file = files.get(decodeURIComponent(req.path.slice(MEDIA_PATH.length + 1)));
      if (refused) answer(401, { errcode: "M_UNAUTHORIZED", error: refused });
      else if (!file) answer(404, { errcode: "M_NOT_FOUND", error: "No such file" });
      else {
        r.status = 200;
        res.status(200).type(file.contentType).send(file.data);
      }
      return;
    }
    if (
      (req.method === "POST" && req.path === EVENTS_PATH) ||
      (req.method === "PUT" && req.path.startsWith(`${MEDIA_PATH}/`))
    ) {
      const key = r.headers["idempotency-key"] ?? "";
      const n = (attemptsByKey.get(key) ?? 0) + 1;
      attemptsByKey.set(key, n);
      const refused = n === 1 ? undefined : authenticate(REQUIRED_COMPONENTS);
      if (n === 1)
        answer(503, {
          errcode: "M_UNAVAILABLE",
          error: "The conformance kit refuses every first attempt: retry with the same Idempotency-Key",
        });
      else if (refused) answer(401, { errcode: "M_UNAUTHORIZED", error: refused });
      else if (req.method === "PUT") answer(201, { media_id: req.path.slice(MEDIA_PATH.length + 1) });
      else answer(202, { accepted: true, event_seq: received.length });
      return;
    }
    answer(404, { errcode: "M_UNRECOGNIZED", error: `Unrecognized request: ${req.method} ${req.path}` });
  });

  const server: Server = createServer(app);
  const listen = opts.listen ?? { host: "127.0.0.1", port: 0 };
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  }).catch((err: unknown) => {
    throw new Error(
      `listen: cannot listen on ${listen.host}:${String(listen.port)}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  });
  const port = (server.address() as AddressInfo).port;
  const host = listen.host === "0.0.0.0" || listen.host === "::" ? "127.0.0.1" : listen.host;
  if (!base) base = `http://${host.includes(":") ? `[${host}]` : host}:${String(port)}`;

  const run = async (target: TargetOptions): Promise<{ results: CheckResult[] }> => {
    const vendorPublicKey =
      target.vendorPublicKey instanceof KeyObject
        ? target.vendorPublicKey
        : createPublicKey({ key: target.vendorPublicKey, format: "jwk" });
    if (vendorPublicKey.asymmetricKeyType !== "ed25519")
      throw new Error("vendorPublicKey: an Ed25519 key is required");
    vendorKey = { keyId: target.vendorKeyId, key: vendorPublicKey };
    received.length = 0;
    const timeoutMs = target.timeoutMs ?? 30_000;
    const results: CheckResult[] = [];
    const check: Check = async (name, fn) => {
      let result: CheckResult;
      try {
        result = { name, ok: true, detail: await fn() };
      } catch (err) {
        result = {
          name,
          ok: false,
          detail:
            err instanceof CheckFailed ? err.message : `the check could not run: ${(err as Error).message}`,
        };
      }
      results.push(result);
      target.onResult?.(result);
      return result.ok;
    };

    // ---- MedMesh → vendor: the webhook ----
    const webhook = target.webhook;
    const post = async (
      bytes: Buffer,
      o: {
        key?: string;
        sign?: false;
        signWith?: KeyObject;
        created?: number;
        sendBody?: Buffer;
      } = {},
    ) => {
      const headers: Record<string, string> = {
        "content-type": "application/json",
        "content-digest": contentDigest(bytes),
        "idempotency-key": o.key ?? `conformance-${randomUUID()}`,
      };
      if (o.sign !== false)
        Object.assign(
          headers,
          signRequest(
            { method: "POST", url: webhook, headers, body: bytes },
            {
              keyId: medmesh.keyId,
              privateKey: o.signWith ?? medmesh.privateKey,
              components: REQUIRED_COMPONENTS,
              nonce: randomBytes(16).toString("base64url"),
              ...(o.created === undefined ? {} : { created: o.created }),
            },
          ),
        );
      const send = async (): Promise<Answer> => {
        let res: Response;
        try {
          res = await fetch(webhook, {
            method: "POST",
            headers,
            body: o.sendBody ?? bytes,
            signal: AbortSignal.timeout(15_000),
          });
        } catch (err) {
          const cause = (err as { cause?: unknown }).cause;
          throw new CheckFailed(
            `expected an answer from ${webhook}, got no answer: ${cause instanceof Error ? cause.message : (err as Error).message}`,
          );
        }
        const text = await res.text();
        let errcode: string | undefined;
        let error: string | undefined;
        try {
          const json = JSON.parse(text) as { errcode?: unknown; error?: unknown };
          if (typeof json.errcode === "string") errcode = json.errcode;
          if (typeof json.error === "string") error = json.error;
        } catch {
          // not JSON
        }
        return { status: res.status, errcode, error, text };
      };
      return { key: headers["idempotency-key"] ?? "", answer: await send(), replay: send };
    };
    const json = (v: unknown) => Buffer.from(JSON.stringify(v));
    const expect2xx = (a: Answer, what: string): void => {
      if (a.status < 200 || a.status > 299)
        throw new CheckFailed(`expected 2xx for ${what}, got ${describe(a)}`);
    };
    /** Whether a correctly signed request was accepted: without it, a refusal proves nothing. */
    let baseline = false;
    const expectRefused = (a: Answer, status: 401 | 400, what: string): void => {
      if (a.status === status && !baseline)
        throw new CheckFailed(
          `expected ${String(status)} for ${what} and got it, but a correctly signed request was refused too, so this proves nothing (see webhook.accepts_signed_events)`,
        );
      if (a.status !== status)
        throw new CheckFailed(
          `expected ${String(status)}${status === 401 ? " M_UNAUTHORIZED" : ""} for ${what}, got ${describe(a)}`,
        );
      if (status === 401 && (a.errcode !== "M_UNAUTHORIZED" || !a.error))
        throw new CheckFailed(
          `expected the body {"errcode":"M_UNAUTHORIZED","error":"…"} for ${what}, got ${a.text.slice(0, 200) || "an empty body"}`,
        );
    };
    /** How often the vendor applied the event with this key (trigger contract: action "count"). */
    const applied = async (key: string): Promise<number> => {
      if (!target.trigger) throw new Error("no trigger");
      let res: Response;
      try {
        res = await fetch(target.trigger, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ action: "count", idempotency_key: key }),
          signal: AbortSignal.timeout(15_000),
        });
      } catch (err) {
        throw new CheckFailed(
          `expected the trigger ${target.trigger} to answer, got: ${(err as Error).message}`,
        );
      }
      const text = await res.text();
      let n: unknown;
      try {
        n = (JSON.parse(text) as { applied?: unknown }).applied;
      } catch {
        // reported below
      }
      if (!res.ok || typeof n !== "number")
        throw new CheckFailed(
          `expected {"applied": n} from the trigger's count action, got ${String(res.status)} ${text.slice(0, 200)}`,
        );
      return n;
    };
    /** With a trigger, a refused request must not have been applied. */
    const notApplied = async (key: string): Promise<string> => {
      if (!target.trigger) return "";
      const n = await applied(key);
      if (n !== 0)
        throw new CheckFailed(`the vendor answered 401 but applied the event ${String(n)} time(s)`);
      return ", not applied";
    };

    const conversation = `!conformance-${randomBytes(6).toString("hex")}:${MATRIX_SERVER}`;
    const alice = `@alice:${MATRIX_SERVER}`;
    const message = (text: string, extra: Record<string, unknown> = {}) => ({
      type: "message",
      conversation_id: conversation,
      message_id: `$${randomBytes(12).toString("base64url")}`,
      sender: alice,
      text,
      ...extra,
    });

    await check("webhook.accepts_signed_events", async () => {
      const create = await post(
        json({
          type: "conversation.create",
          conversation_id: conversation,
          kind: target.vendorUser ? "direct" : "group",
          creator: alice,
          members: [alice, ...(target.vendorUser ? [target.vendorUser] : [])],
          users: [{ id: alice, display_name: "Alice (conformance kit)" }],
        }),
      );
      expect2xx(create.answer, "a correctly signed conversation.create");
      const msg = await post(json(message("Hello from the conformance kit")));
      expect2xx(msg.answer, "a correctly signed message");
      baseline = true;
      if (!target.trigger)
        return `conversation.create ${String(create.answer.status)}, message ${String(msg.answer.status)}`;
      const n = await applied(msg.key);
      if (n !== 1)
        throw new CheckFailed(
          `expected the accepted message to be applied once, the trigger says ${String(n)}`,
        );
      return `conversation.create ${String(create.answer.status)}, message ${String(msg.answer.status)}, applied once`;
    });

    await check("webhook.rejects_unsigned", async () => {
      const r = await post(json(message("unsigned")), { sign: false });
      expectRefused(r.answer, 401, "a request without Signature and Signature-Input");
      return `${describe(r.answer)}${await notApplied(r.key)}`;
    });

    await check("webhook.rejects_wrong_key", async () => {
      const other = generateKeyPairSync("ed25519").privateKey;
      const r = await post(json(message("signed with another key")), { signWith: other });
      expectRefused(
        r.answer,
        401,
        `a request signed with another key under MedMesh's keyid ${medmesh.keyId}`,
      );
      return `${describe(r.answer)}${await notApplied(r.key)}`;
    });

    await check("webhook.rejects_altered_body", async () => {
      const signed = message("the text MedMesh signed");
      const altered = json({ ...signed, text: "a text changed on the way" });
      const r = await post(json(signed), { sendBody: altered });
      expectRefused(r.answer, 401, "a body changed after signing (Content-Digest no longer matches)");
      return `${describe(r.answer)}${await notApplied(r.key)}`;
    });

    await check("webhook.rejects_stale_signature", async () => {
      const r = await post(json(message("signed an hour ago")), {
        created: Math.floor(Date.now() / 1000) - 3600,
      });
      expectRefused(
        r.answer,
        401,
        `a signature created 3600 s ago (more than ${String(MAX_SKEW_SECONDS)} s)`,
      );
      return `${describe(r.answer)}${await notApplied(r.key)}`;
    });

    await check("webhook.rejects_replay", async () => {
      const r = await post(json(message("sent once, replayed")));
      expect2xx(r.answer, "the original request");
      const again = await r.replay();
      expectRefused(again, 401, "the identical request again (same signature and nonce)");
      if (target.trigger) {
        const n = await applied(r.key);
        if (n !== 1)
          throw new CheckFailed(`expected the event to be applied once, the trigger says ${String(n)}`);
      }
      return `first ${String(r.answer.status)}, replay ${describe(again)}`;
    });

    const retryKey = `conformance-${randomUUID()}`;
    await check("webhook.retry_accepted", async () => {
      const body = json(message("delivered twice by a retrying MedMesh"));
      const first = await post(body, { key: retryKey });
      expect2xx(first.answer, "the first delivery");
      const retry = await post(body, { key: retryKey });
      expect2xx(retry.answer, "a retry (new signature and nonce, same Idempotency-Key and body)");
      return `first ${String(first.answer.status)}, retry ${String(retry.answer.status)}`;
    });

    if (target.trigger)
      await check("webhook.retry_applied_once", async () => {
        const n = await applied(retryKey);
        if (n !== 1)
          throw new CheckFailed(
            `expected the event delivered twice under one Idempotency-Key to be applied once, the trigger says ${String(n)}`,
          );
        return "applied once";
      });

    await check("webhook.rejects_malformed_json", async () => {
      const r = await post(Buffer.from('{"type": "message", "conversation_id": '));
      expectRefused(r.answer, 400, "a correctly signed body that is not JSON");
      return describe(r.answer);
    });

    await check("webhook.rejects_invalid_event", async () => {
      const r = await post(json({ type: "message", conversation_id: conversation }));
      expectRefused(r.answer, 400, "a correctly signed message without message_id, sender and text");
      return describe(r.answer);
    });

    await check("webhook.accepts_undelivered", async () => {
      const r = await post(
        json({
          type: "undelivered",
          conversation_id: conversation,
          event_seq: 1,
          idempotency_key: `conformance-${randomUUID()}`,
          reason: "Matrix refused it: M_FORBIDDEN: the conformance kit's example",
        }),
      );
      expect2xx(r.answer, "an undelivered notice for one of the vendor's events");
      return String(r.answer.status);
    });

    await check("webhook.fetches_file", async () => {
      const mediaId = `conformance-${randomUUID()}`;
      const data = Buffer.from(`A file from the MedMesh conformance kit, ${new Date().toISOString()}\n`);
      files.set(mediaId, { data, contentType: "text/plain" });
      const r = await post(
        json(
          message("conformance.txt", {
            file: {
              media_id: mediaId,
              name: "conformance.txt",
              content_type: "text/plain",
              size: data.length,
            },
          }),
        ),
      );
      expect2xx(r.answer, "a message with a file");
      const path = `${MEDIA_PATH}/${mediaId}`;
      const get = await waitFor(() => received.find((x) => x.method === "GET" && x.path === path), timeoutMs);
      if (!get)
        throw new CheckFailed(
          `expected a signed GET ${base}${path} within ${String(timeoutMs / 1000)} s (the vendor's MedMesh URL must be ${base}), got none`,
        );
      const v = verifyRequest(
        { method: "GET", url: get.url, headers: get.headers, body: Buffer.alloc(0) },
        {
          key: (id) => (id === target.vendorKeyId ? vendorPublicKey : undefined),
          required: ["@method", "@target-uri"],
          maxSkewSeconds: MAX_SKEW_SECONDS,
        },
      );
      if (!v.ok) throw new CheckFailed(`expected the GET signed with the vendor's key, but: ${v.reason}`);
      if (!v.nonce) throw new CheckFailed("expected a nonce in the GET's signature, got none");
      if (get.status !== 200) throw new CheckFailed(`the kit refused the GET with ${String(get.status)}`);
      return `GET ${path}: signed, ${String(data.length)} bytes served`;
    });

    // ---- vendor → MedMesh: what the vendor sends (only with a trigger) ----
    if (target.trigger)
      await senderChecks(
        { received, base },
        target.trigger,
        target.vendorKeyId,
        vendorPublicKey,
        timeoutMs,
        check,
      );
    vendorKey = undefined;
    return { results };
  };

  return {
    url: base,
    medmeshKeyId: medmesh.keyId,
    medmeshPublicKey,
    run,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}

/** Starts the kit, runs every check against the vendor, stops the kit. */
export async function runConformance(opts: KitOptions & TargetOptions): Promise<{ results: CheckResult[] }> {
  const kit = await startConformanceKit(opts);
  try {
    return await kit.run(opts);
  } finally {
    await kit.close();
  }
}
