import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { ApiError, asyncHandler } from "@medmesh/common";
import express, { type Express, type Request } from "express";
import type { Knex } from "knex";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import type { InteropConfig } from "./config.ts";
import { verifyRequest } from "./signatures.ts";
import { InteropEvent } from "./types.ts";

export const EVENTS_PATH = "/_medmesh/interop/v1/events";
export const MEDIA_PATH = "/_medmesh/interop/v1/media";
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
    /** Fetches a file a Matrix user sent (from the media repository, decrypted). */
    media?: { fetch(row: { mxc: string | null; file: unknown }): Promise<Buffer> };
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
  const authenticate = vendorAuthenticator(d.config, d.knex, vendors);

  app.post(
    EVENTS_PATH,
    asyncHandler(async (req, res) => {
      let vendor: Vendor;
      try {
        const size = (req as { rawBody?: Buffer }).rawBody?.length ?? 0;
        if (size > d.config.max_body_bytes)
          throw new ApiError(
            "M_TOO_LARGE",
            `The request body is larger than ${String(d.config.max_body_bytes)} bytes`,
          );
        vendor = await authenticate(req, REQUIRED_COMPONENTS);
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

  const mediaRoute = `${MEDIA_PATH}/:mediaId`;
  app.put(
    mediaRoute,
    express.raw({ type: () => true, limit: d.config.max_media_bytes }),
    asyncHandler(async (req, res) => {
      const vendor = await authenticate(req, REQUIRED_COMPONENTS);
      const mediaId = String(req.params.mediaId);
      if (!/^[A-Za-z0-9._~-]{1,255}$/.test(mediaId))
        throw new ApiError("M_INVALID_PARAM", "media_id: letters, digits, '.', '_', '~', '-'");
      const data =
        (req as { rawBody?: Buffer }).rawBody ?? (Buffer.isBuffer(req.body) ? req.body : undefined);
      if (!data || data.length === 0) throw new ApiError("M_BAD_JSON", "The file is empty");
      const contentType = (req.headers["content-type"] ?? "application/octet-stream").split(";")[0]?.trim();
      const inserted = await d
        .knex("bridge_media")
        .insert({
          media_id: mediaId,
          vendor: vendor.id,
          content_type: contentType,
          data,
          created_at: new Date(),
        })
        .onConflict("media_id")
        .ignore()
        .returning("media_id");
      if (inserted.length === 0) {
        const existing = await d
          .knex("bridge_media")
          .where({ media_id: mediaId })
          .first<{ vendor: string | null; data: Buffer | null } | undefined>();
        if (existing?.vendor !== vendor.id || existing.data === null || !existing.data.equals(data))
          throw new ApiError(
            "ORG.MEDMESH.IDEMPOTENCY_CONFLICT",
            `The media_id ${mediaId} is taken by another file`,
          );
      }
      requests.inc({ outcome: "accepted" });
      res.status(201).json({ media_id: mediaId });
    }),
  );
  app.get(
    mediaRoute,
    asyncHandler(async (req, res) => {
      const vendor = await authenticate(req, ["@method", "@target-uri"]);
      const row = await d
        .knex("bridge_media")
        .where({ media_id: String(req.params.mediaId), vendor: vendor.id })
        .first<
          { content_type: string; data: Buffer | null; mxc: string | null; file: unknown } | undefined
        >();
      if (!row) throw new ApiError("M_NOT_FOUND", "No such file for this vendor");
      const data = row.data ?? (d.media ? await d.media.fetch(row) : undefined);
      if (!data) throw new ApiError("M_NOT_FOUND", "The file is no longer available");
      res.status(200).type(row.content_type).send(data);
    }),
  );
}

/** Checks a vendor request's signature (with `required` covered) and refuses a reused nonce. */
function vendorAuthenticator(config: InteropConfig, knex: Knex, vendors: Map<string, Vendor>) {
  let sinceCleanup = 0;
  return async (req: Request, required: readonly string[]): Promise<Vendor> => {
    const body =
      (req as { rawBody?: Buffer }).rawBody ?? (Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0));
    let vendor: Vendor | undefined;
    const verified = verifyRequest(
      {
        method: req.method,
        url: new URL(req.originalUrl, config.public_url).toString(),
        headers: req.headers as Record<string, string>,
        body,
      },
      {
        key: (keyId) => (vendor = vendors.get(keyId))?.key,
        required,
        maxSkewSeconds: config.max_skew_seconds,
      },
    );
    if (!verified.ok || !vendor)
      throw new ApiError("M_UNAUTHORIZED", verified.ok ? "Unknown vendor" : verified.reason);
    if (!verified.nonce) throw new ApiError("M_UNAUTHORIZED", "The signature must carry a nonce");
    if (++sinceCleanup >= 100) {
      sinceCleanup = 0;
      await knex("interop_nonces").where("expires_at", "<", new Date()).delete();
    }
    const inserted = await knex("interop_nonces")
      .insert({
        vendor: vendor.id,
        nonce: verified.nonce,
        expires_at: new Date((verified.created + 2 * config.max_skew_seconds) * 1000),
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
}
