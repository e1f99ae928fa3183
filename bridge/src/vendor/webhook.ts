import { createHash, type KeyObject } from "node:crypto";
import { ApiError } from "@medmesh/common";
import express, { type Request, type RequestHandler, type Response } from "express";
import type { Logger } from "pino";
import { REQUIRED_COMPONENTS } from "../interop/server.ts";
import { verifyRequest } from "../interop/signatures.ts";
import { WebhookEvent } from "../interop/types.ts";
import { applyEvent } from "./state.ts";
import { nowIso, type VendorStore } from "./store.ts";

export type BrokenFlag = "accept_unsigned" | "no_dedup" | "accept_replay";

/** How far a signature's `created` may be from now; nonces are kept twice as long. */
export const MAX_SKEW_SECONDS = 300;

export interface WebhookDeps {
  store: VendorStore;
  medmesh: { keyId: string; key: KeyObject };
  /** The URI MedMesh addressed, as it signed it (the vendor's public URL + the request's path). */
  targetUri(req: Request): string;
  broken: Partial<Record<BrokenFlag, boolean>>;
  log: Logger;
  /** Called after a received event is stored (a file to download, for one). */
  onStored(event: WebhookEvent): void;
}

/**
 * MedMesh → vendor: `POST {webhook}` with one interop event. Checked in this order: MedMesh's
 * signature (required components, its key, `created` within ±300 s) — 401; a nonce seen before — 401;
 * the Idempotency-Key, the JSON, the event — 400; then, in one transaction, the idempotency record
 * (the same key and body again: 200, not applied again; another body: 409) and the event itself.
 * `broken` switches single checks off, to show the conformance kit notices.
 */
export function webhookHandlers(d: WebhookDeps): RequestHandler[] {
  let sinceCleanup = 0;

  const authenticate = (req: Request, body: Buffer): void => {
    const signed = req.headers.signature !== undefined || req.headers["signature-input"] !== undefined;
    if (d.broken.accept_unsigned && !signed) return;
    const verified = verifyRequest(
      { method: req.method, url: d.targetUri(req), headers: req.headers as Record<string, string>, body },
      {
        key: (keyId) => (keyId === d.medmesh.keyId ? d.medmesh.key : undefined),
        required: REQUIRED_COMPONENTS,
        maxSkewSeconds: MAX_SKEW_SECONDS,
      },
    );
    if (!verified.ok)
      throw new ApiError("M_UNAUTHORIZED", `MedMesh's signature is not valid: ${verified.reason}`);
    if (d.broken.accept_replay) return;
    if (!verified.nonce) throw new ApiError("M_UNAUTHORIZED", "The signature must carry a nonce");
    if (++sinceCleanup >= 100) {
      sinceCleanup = 0;
      d.store.run("DELETE FROM nonces WHERE expires_at < ?", Date.now());
    }
    const { changes } = d.store.run(
      "INSERT INTO nonces (key_id, nonce, expires_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
      verified.keyId,
      verified.nonce,
      (verified.created + 2 * MAX_SKEW_SECONDS) * 1000,
    );
    if (changes === 0)
      throw new ApiError(
        "M_UNAUTHORIZED",
        "This request was received before (its signature nonce is used): a replay is refused",
      );
  };

  const handle = (req: Request, res: Response): void => {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    authenticate(req, body);
    const key = req.headers["idempotency-key"];
    if (typeof key !== "string" || !/^[\x21-\x7e]{1,255}$/.test(key))
      throw new ApiError("M_MISSING_PARAM", "Idempotency-Key is required (1–255 visible ASCII characters)");
    let json: unknown;
    try {
      json = JSON.parse(body.toString("utf8"));
    } catch (err) {
      throw new ApiError("M_NOT_JSON", `The body is not JSON: ${(err as Error).message}`);
    }
    const parsed = WebhookEvent.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      throw new ApiError(
        "M_BAD_JSON",
        `Not an interop event: ${issue?.path.join(".") || "body"}: ${issue?.message ?? "invalid"}`,
      );
    }
    const event = parsed.data;
    const hash = createHash("sha256").update(body).digest("hex");
    const answer = d.store.tx(() => {
      if (!d.broken.no_dedup) {
        const earlier = d.store.get(
          "SELECT request_hash, status, response FROM idempotency_keys WHERE idempotency_key = ?",
          key,
        );
        if (earlier) {
          if (earlier.request_hash !== hash)
            throw new ApiError(
              "ORG.MEDMESH.IDEMPOTENCY_CONFLICT",
              "This Idempotency-Key was used for another request",
            );
          return { status: Number(earlier.status), body: String(earlier.response), retried: true };
        }
      }
      const seq = applyEvent(d.store, event, "in", key);
      d.store.run(
        `INSERT INTO idempotency_keys (idempotency_key, request_hash, status, response, first_seen_at)
         VALUES (?, ?, 200, '{}', ?) ON CONFLICT DO NOTHING`,
        key,
        hash,
        nowIso(),
      );
      return { status: 200, body: "{}", retried: false, seq };
    });
    d.log.info(
      {
        type: event.type,
        conversation_id: event.conversation_id,
        idempotency_key: key,
        retried: answer.retried,
      },
      answer.retried ? "webhook: a retry, answered again" : "webhook: event stored",
    );
    if (!answer.retried) d.onStored(event);
    res.status(answer.status).type("application/json").send(answer.body);
  };

  return [
    express.raw({ type: () => true, limit: "1mb" }),
    (req, res) => {
      handle(req, res);
    },
  ];
}
