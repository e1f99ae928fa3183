import { randomBytes, type KeyObject } from "node:crypto";
import { REQUIRED_COMPONENTS } from "../interop/server.ts";
import { contentDigest, signRequest } from "../interop/signatures.ts";

export interface Signer {
  keyId: string;
  privateKey: KeyObject;
}

/** A fresh signature nonce: 128 random bits. */
export const newNonce = (): string => randomBytes(16).toString("base64url");

/**
 * The headers of one signed interop request (RFC 9421, Ed25519, a fresh nonce each call): with a
 * body, over the required components (the body through its Content-Digest); without (GET), over
 * `@method` and `@target-uri`.
 */
export function signedHeaders(
  signer: Signer,
  method: string,
  url: string,
  body?: { bytes: Buffer; contentType: string; idempotencyKey: string },
): Record<string, string> {
  const headers: Record<string, string> = body
    ? {
        "content-type": body.contentType,
        "content-digest": contentDigest(body.bytes),
        "idempotency-key": body.idempotencyKey,
      }
    : {};
  Object.assign(
    headers,
    signRequest(
      { method, url, headers, ...(body ? { body: body.bytes } : {}) },
      {
        keyId: signer.keyId,
        privateKey: signer.privateKey,
        components: body ? REQUIRED_COMPONENTS : ["@method", "@target-uri"],
        nonce: newNonce(),
      },
    ),
  );
  return headers;
}

/** Whether an answer is worth retrying (with the same Idempotency-Key): 408, 429 and 5xx. */
export const isTransient = (status: number): boolean => status === 408 || status === 429 || status >= 500;

/** Exponential backoff: 200 ms after the first failed attempt, doubling, at most 10 s. */
export const backoffMs = (failedAttempts: number): number =>
  Math.min(200 * 2 ** Math.max(0, failedAttempts - 1), 10_000);

/** The words of an error answer (`{errcode, error}` when it is one), short enough for a log line. */
export function describeAnswer(status: number, text: string): string {
  try {
    const body = JSON.parse(text) as { errcode?: unknown; error?: unknown };
    if (typeof body.errcode === "string")
      return `${String(status)} ${body.errcode}: ${typeof body.error === "string" ? body.error : ""}`;
  } catch {
    // not JSON: the raw text below
  }
  return `${String(status)} ${text.slice(0, 200)}`.trim();
}

/** A network error's actual cause (fetch wraps it in "fetch failed"). */
export function networkReason(err: unknown): string {
  const cause = (err as { cause?: unknown }).cause;
  if (cause instanceof Error) return cause.message;
  return err instanceof Error ? err.message : String(err);
}

/** A sleep that `wake` or `stop` cuts short. */
export class Pacer {
  private timer: NodeJS.Timeout | undefined;
  private resolve: (() => void) | undefined;
  private woken = false;

  sleep(ms: number): Promise<void> {
    if (this.woken) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.resolve = resolve;
      this.timer = setTimeout(() => {
        this.wake();
      }, ms);
    });
  }

  wake(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const resolve = this.resolve;
    this.resolve = undefined;
    if (resolve) resolve();
    else this.woken = true;
  }
}
