import { createHash, createPublicKey, type KeyObject } from "node:crypto";
import { ApiError, asyncHandler } from "@medmesh/common";
import express, { type Express, type Request } from "express";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import type { BridgeStore, InteropRequests, MediaRow } from "../store/index.ts";
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
    store: BridgeStore;
    log: Logger;
    metrics: Registry;
    onAccepted?: (seq: number) => void;
    /** Fetches a file from the media repository (decrypted): what Matrix users sent, and uploads once in Matrix. */
    media?: { fetch(row: MediaRow): Promise<Buffer> };
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
  const { store } = d;
  const authenticate = vendorAuthenticator(d.config, store.requests, vendors);

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
      const answer = await store.transaction(async (trx) => {
        const earlier = await store.requests.earlier(trx, vendor.id, key);
        if (earlier) {
          if (earlier.request_hash !== hash)
            throw new ApiError(
              "ORG.MEDMESH.IDEMPOTENCY_CONFLICT",
              "This Idempotency-Key was used for another request",
            );
          return { status: earlier.status, body: earlier.response, retried: true };
        }
        const owner = await store.portals.ownerOf(trx, event.conversation_id);
        if (event.type === "conversation.create") {
          if (owner)
            throw new ApiError("M_FORBIDDEN", `The conversation ${event.conversation_id} exists already`);
          await store.portals.create(trx, {
            vendor: vendor.id,
            conversation_id: event.conversation_id,
            kind: event.kind,
          });
        } else if (!owner) {
          throw new ApiError("M_NOT_FOUND", `No conversation ${event.conversation_id}: create it first`);
        } else if (owner !== vendor.id) {
          throw new ApiError(
            "M_FORBIDDEN",
            `The conversation ${event.conversation_id} belongs to another vendor`,
          );
        }
        const seq = await store.inbound.accept(trx, {
          vendor: vendor.id,
          conversation_id: event.conversation_id,
          event,
        });
        const body = { accepted: true, event_seq: seq };
        await store.requests.remember(trx, { vendor: vendor.id, key, hash, status: 202, response: body });
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
      const stored = await store.media.putUpload({
        media_id: mediaId,
        vendor: vendor.id,
        content_type: contentType ?? "application/octet-stream",
        data,
      });
      if (stored === "conflict")
        throw new ApiError(
          "ORG.MEDMESH.IDEMPOTENCY_CONFLICT",
          `The media_id ${mediaId} is taken by another file`,
        );
      requests.inc({ outcome: "accepted" });
      res.status(201).json({ media_id: mediaId });
    }),
  );
  app.get(
    mediaRoute,
    asyncHandler(async (req, res) => {
      const vendor = await authenticate(req, ["@method", "@target-uri"]);
      const row = await store.media.get(String(req.params.mediaId), vendor.id);
      if (!row) throw new ApiError("M_NOT_FOUND", "No such file for this vendor");
      const data = row.data ?? (d.media ? await d.media.fetch(row) : undefined);
      if (!data) throw new ApiError("M_NOT_FOUND", "The file is no longer available");
      res.status(200).type(row.content_type).send(data);
    }),
  );
}

/** Checks a vendor request's signature (with `required` covered) and refuses a reused nonce. */
function vendorAuthenticator(config: InteropConfig, records: InteropRequests, vendors: Map<string, Vendor>) {
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
    // Expired nonces go with the bridge's prune (lifecycle/pruner.ts).
    const fresh = await records.useNonce(
      vendor.id,
      verified.nonce,
      new Date((verified.created + 2 * config.max_skew_seconds) * 1000),
    );
    if (!fresh)
      throw new ApiError(
        "M_UNAUTHORIZED",
        "This request was already received (its signature nonce is used): sign each request anew",
      );
    return vendor;
  };
}
