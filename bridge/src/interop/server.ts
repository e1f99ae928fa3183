import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { ApiError, asyncHandler } from "@medmesh/common";
import type { Express, Request } from "express";
import type { Knex } from "knex";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import type { InteropConfig } from "./config.ts";
import { verifyRequest } from "./signatures.ts";
import { InteropEvent } from "./types.ts";

export const EVENTS_PATH = "/_medmesh/interop/v1/events";
/** What a vendor's request must sign: method, exact URI, body (via its digest) and the key. */
export const REQUIRED_COMPONENTS = [
  "@method",
  "@target-uri",
  "content-type",
  "content-digest",
  "idempotency-key",
];

interface Vendor {
  id: string;
  keyId: string;
  key: KeyObject;
}

/**
 * The vendor side of the interop API, on the bridge: signed requests only (RFC 9421, per-vendor
 * Ed25519 keys), replays refused by nonce, retries answered from the idempotency record,
 * conversations owned by the vendor that created them. An accepted event is stored (with its
 * idempotency record, in one transaction) before the answer: the bridge core carries it on.
 */
export function mountInteropApi(
  app: Express,
  d: {
    config: InteropConfig;
    knex: Knex;
    log: Logger;
    metrics: Registry;
    onAccepted?: (seq: number) => void;
  },
): void {
  const vendors = new Map<string, Vendor>(
    d.config.vendors.map((v) => [
      v.key_id,
      { id: v.id, keyId: v.key_id, key: createPublicKey({ key: v.public_key, format: "jwk" }) },
    ]),
  );
  const requests = new Counter({
    name: "medmesh_interop_requests_total",
    help: "Interop API requests by outcome (accepted, retried, refused)",
    labelNames: ["outcome"] as const,
    registers: [d.metrics],
  });
  let sinceCleanup = 0;

  const authenticate = async (req: Request): Promise<Vendor> => {
    const body = (req as { rawBody?: Buffer }).rawBody ?? Buffer.alloc(0);
    if (body.length > d.config.max_body_bytes)
      throw new ApiError(
        "M_TOO_LARGE",
        `The request body is larger than ${String(d.config.max_body_bytes)} bytes`,
      );
    let vendor: Vendor | undefined;
    const verified = verifyRequest(
      {
        method: req.method,
        url: new URL(req.originalUrl, d.config.public_url).toString(),
        headers: req.headers as Record<string, string>,
        body,
      },
      {
        key: (keyId) => (vendor = vendors.get(keyId))?.key,
        required: REQUIRED_COMPONENTS,
        maxSkewSeconds: d.config.max_skew_seconds,
      },
    );
    if (!verified.ok || !vendor)
      throw new ApiError("M_UNAUTHORIZED", verified.ok ? "Unknown vendor" : verified.reason);
    if (!verified.nonce) throw new ApiError("M_UNAUTHORIZED", "The signature must carry a nonce");
    if (++sinceCleanup >= 100) {
      sinceCleanup = 0;
      await d.knex("interop_nonces").where("expires_at", "<", new Date()).delete();
    }
    const inserted = await d
      .knex("interop_nonces")
      .insert({
        vendor: vendor.id,
        nonce: verified.nonce,
        expires_at: new Date((verified.created + 2 * d.config.max_skew_seconds) * 1000),
      })
      .onConflict(["vendor", "nonce"])
      .ignore()
      .returning("nonce");
    if (inserted.length === 0)
      throw new ApiError(
        "M_UNAUTHORIZED",
        "This request was already received (its signature nonce is used): sign each request anew",
      );
    return vendor;
  };

  app.post(
    EVENTS_PATH,
    asyncHandler(async (req, res) => {
      let vendor: Vendor;
      try {
        vendor = await authenticate(req);
      } catch (err) {
        requests.inc({ outcome: "refused" });
        throw err;
      }
      const key = req.headers["idempotency-key"];
      if (typeof key !== "string" || !/^[\x21-\x7e]{1,255}$/.test(key))
        throw new ApiError("M_MISSING_PARAM", "Idempotency-Key is required (1–255 visible ASCII characters)");
      const parsed = InteropEvent.safeParse(req.body);
      if (!parsed.success) {
        requests.inc({ outcome: "refused" });
        const issue = parsed.error.issues[0];
        throw new ApiError(
          "M_BAD_JSON",
          `${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`,
        );
      }
      const event = parsed.data;
      const hash = createHash("sha256")
        .update((req as { rawBody?: Buffer }).rawBody ?? "")
        .digest("hex");
      const answer = await d.knex.transaction(async (trx) => {
        const earlier = await trx("interop_requests")
          .where({ vendor: vendor.id, idempotency_key: key })
          .forUpdate()
          .first<{ request_hash: string; status: number; response: unknown } | undefined>();
        if (earlier) {
          if (earlier.request_hash !== hash)
            throw new ApiError(
              "ORG.MEDMESH.IDEMPOTENCY_CONFLICT",
              "This Idempotency-Key was used for another request",
            );
          return { status: earlier.status, body: earlier.response, retried: true };
        }
        const owner = await trx("interop_conversations")
          .where({ conversation_id: event.conversation_id })
          .first<{ vendor: string } | undefined>("vendor");
        if (event.type === "conversation.create") {
          if (owner)
            throw new ApiError("M_FORBIDDEN", `The conversation ${event.conversation_id} exists already`);
          await trx("interop_conversations").insert({
            vendor: vendor.id,
            conversation_id: event.conversation_id,
            kind: event.kind,
            created_at: new Date(),
          });
        } else if (!owner) {
          throw new ApiError("M_NOT_FOUND", `No conversation ${event.conversation_id}: create it first`);
        } else if (owner.vendor !== vendor.id) {
          throw new ApiError(
            "M_FORBIDDEN",
            `The conversation ${event.conversation_id} belongs to another vendor`,
          );
        }
        const [row] = await trx("interop_inbound")
          .insert({
            vendor: vendor.id,
            conversation_id: event.conversation_id,
            event,
            received_at: new Date(),
          })
          .returning<{ seq: string }[]>("seq");
        const body = { accepted: true, event_seq: Number(row?.seq) };
        await trx("interop_requests").insert({
          vendor: vendor.id,
          idempotency_key: key,
          request_hash: hash,
          status: 202,
          response: body,
          received_at: new Date(),
        });
        return { status: 202, body, retried: false };
      });
      requests.inc({ outcome: answer.retried ? "retried" : "accepted" });
      if (!answer.retried) d.onAccepted?.((answer.body as { event_seq: number }).event_seq);
      res.status(answer.status).json(answer.body);
    }),
  );
}
