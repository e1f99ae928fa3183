import type { KeyObject } from "node:crypto";
import { EVENTS_PATH, REQUIRED_COMPONENTS } from "../interop/server.ts";
import { contentDigest, parseSignatureInput, verifyRequest } from "../interop/signatures.ts";
import { InteropEvent } from "../interop/types.ts";
import { CheckFailed, MAX_SKEW_SECONDS, waitFor, type Check, type Received } from "./kit-common.ts";

/**
 * The sender checks: the trigger asks the vendor to send a message to the kit; the kit checks how
 * it was sent (what its own endpoint received from `start` on).
 */
export async function senderChecks(
  kit: { received: readonly Received[]; base: string },
  trigger: string,
  vendorKeyId: string,
  key: KeyObject,
  timeoutMs: number,
  check: Check,
): Promise<void> {
  const { received, base } = kit;
  const start = received.length;
  const triggered = await check("sender.trigger", async () => {
    let res: Response;
    try {
      res = await fetch(trigger, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ action: "send_message", medmesh_url: base }),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (err) {
      throw new CheckFailed(`expected the trigger ${trigger} to answer, got: ${(err as Error).message}`);
    }
    const text = await res.text();
    if (!res.ok)
      throw new CheckFailed(
        `expected 2xx from the trigger's send_message, got ${String(res.status)} ${text.slice(0, 200)}`,
      );
    return String(res.status);
  });
  const sent = () => received.slice(start).filter((r) => r.method !== "GET");
  const eventOf = (r: Received) => {
    try {
      return InteropEvent.safeParse(JSON.parse(r.body.toString("utf8")));
    } catch {
      return undefined;
    }
  };
  const isMessage = (r: Received) => r.path === EVENTS_PATH && eventOf(r)?.data?.type === "message";
  const retried = () => {
    const first = sent().find(isMessage);
    if (!first) return undefined;
    const k = first.headers["idempotency-key"];
    return sent().filter((r) => r.headers["idempotency-key"] === k).length >= 2 ? true : undefined;
  };
  if (triggered) await waitFor(retried, timeoutMs);
  const requests = sent();
  const none = `no request reached ${base}${EVENTS_PATH} within ${String(timeoutMs / 1000)} s`;
  const each = (fn: (r: Received, i: number) => string | undefined): string => {
    if (requests.length === 0) throw new CheckFailed(`expected requests to check, got ${none}`);
    const problems = requests.map((r, i) => fn(r, i)).filter((p) => p !== undefined);
    if (problems.length > 0) throw new CheckFailed(problems.join("; "));
    return `${String(requests.length)} request(s)`;
  };
  const label = (r: Received, i: number) =>
    `request ${String(i + 1)} (${r.method} ${r.path}, Idempotency-Key ${r.headers["idempotency-key"] ?? "none"})`;

  await check("sender.sends_valid_event", () => {
    const messages = requests.filter((r) => r.path === EVENTS_PATH);
    if (messages.length === 0) throw new CheckFailed(`expected a message event, got ${none}`);
    const invalid = messages.filter((r) => !eventOf(r)?.success);
    if (invalid.length > 0) {
      const issue = invalid[0] && eventOf(invalid[0])?.error?.issues[0];
      throw new CheckFailed(
        `expected valid interop events, got ${String(invalid.length)} invalid: ${issue ? `${issue.path.join(".") || "body"}: ${issue.message}` : "not JSON"}`,
      );
    }
    if (!messages.some(isMessage))
      throw new CheckFailed(
        `expected a message event, got only ${messages.map((r) => eventOf(r)?.data?.type).join(", ")}`,
      );
    return messages.map((r) => eventOf(r)?.data?.type).join(", ");
  });

  await check("sender.signature_components", () =>
    each((r, i) => {
      const input = r.headers["signature-input"];
      if (!input || !r.headers.signature) return `${label(r, i)} is not signed`;
      let parsed: ReturnType<typeof parseSignatureInput>;
      try {
        parsed = parseSignatureInput(input);
      } catch (err) {
        return `${label(r, i)}: ${(err as Error).message}`;
      }
      const missing = REQUIRED_COMPONENTS.filter((c) => !parsed.components.includes(c));
      const problems = [
        missing.length > 0 ? `does not cover ${missing.join(", ")}` : undefined,
        parsed.params.keyid !== vendorKeyId
          ? `keyid is ${String(parsed.params.keyid)}, not ${vendorKeyId}`
          : undefined,
        parsed.params.alg !== "ed25519" ? `alg is ${String(parsed.params.alg)}, not "ed25519"` : undefined,
      ].filter((p) => p !== undefined);
      return problems.length > 0 ? `${label(r, i)}: ${problems.join(", ")}` : undefined;
    }),
  );

  await check("sender.content_digest", () =>
    each((r, i) => {
      const want = contentDigest(r.body);
      const got = r.headers["content-digest"];
      return got === want
        ? undefined
        : `${label(r, i)}: Content-Digest is ${got ?? "missing"}, the body's is ${want}`;
    }),
  );

  await check("sender.signature_valid", () =>
    each((r, i) => {
      const v = verifyRequest(
        { method: r.method, url: r.url, headers: r.headers, body: r.body },
        {
          key: (id) => (id === vendorKeyId ? key : undefined),
          required: REQUIRED_COMPONENTS,
          maxSkewSeconds: 10 ** 9,
        },
      );
      return v.ok ? undefined : `${label(r, i)}: ${v.reason} (the kit verified it as ${r.url})`;
    }),
  );

  await check("sender.created_fresh", () =>
    each((r, i) => {
      let created: unknown;
      try {
        created = parseSignatureInput(r.headers["signature-input"] ?? "").params.created;
      } catch {
        return `${label(r, i)}: no readable Signature-Input`;
      }
      if (typeof created !== "number") return `${label(r, i)}: no created parameter`;
      const off = Math.floor(r.at / 1000) - created;
      return Math.abs(off) <= MAX_SKEW_SECONDS
        ? undefined
        : `${label(r, i)}: created ${String(off)} s before it arrived (at most ${String(MAX_SKEW_SECONDS)} s)`;
    }),
  );

  await check("sender.nonce_unique", () => {
    const nonces = new Map<string, number>();
    // The file downloads of the webhook checks count too: a nonce is never reused.
    const all = received.filter((r) => r.headers["signature-input"] !== undefined);
    for (const r of all) {
      try {
        const n = parseSignatureInput(r.headers["signature-input"] ?? "").params.nonce;
        if (typeof n === "string") nonces.set(n, (nonces.get(n) ?? 0) + 1);
      } catch {
        // reported by sender.signature_components
      }
    }
    const detail = each((r, i) => {
      let n: unknown;
      try {
        n = parseSignatureInput(r.headers["signature-input"] ?? "").params.nonce;
      } catch {
        return `${label(r, i)}: no readable Signature-Input`;
      }
      if (typeof n !== "string" || n.length === 0) return `${label(r, i)}: no nonce`;
      if ((nonces.get(n) ?? 0) > 1)
        return `${label(r, i)}: the nonce ${n} was used ${String(nonces.get(n))} times`;
      return undefined;
    });
    return `${detail}, ${String(nonces.size)} distinct nonce(s)`;
  });

  await check("sender.retries_after_503", () => {
    const first = requests.find(isMessage);
    if (!first)
      throw new CheckFailed(
        `expected a message event answered 503, then its retry; got ${requests.length > 0 ? "no message event" : none}`,
      );
    const k = first.headers["idempotency-key"];
    const attempts = requests.filter((r) => r.headers["idempotency-key"] === k);
    if (attempts.length < 2)
      throw new CheckFailed(
        `expected a retry with the same Idempotency-Key (${k ?? "none"}) after the kit's 503 within ${String(timeoutMs / 1000)} s, got none` +
          (requests.length > 1
            ? ` (other keys: ${requests
                .filter((r) => r !== first)
                .map((r) => r.headers["idempotency-key"] ?? "none")
                .join(", ")})`
            : ""),
      );
    return `${String(attempts.length)} attempts under ${k ?? ""}, answered ${attempts.map((a) => a.status).join(", ")}`;
  });

  await check("sender.retry_same_body", () => {
    const byKey = new Map<string, Received[]>();
    for (const r of requests)
      byKey.set(r.headers["idempotency-key"] ?? "", [
        ...(byKey.get(r.headers["idempotency-key"] ?? "") ?? []),
        r,
      ]);
    const retriedKeys = [...byKey.entries()].filter(([, rs]) => rs.length >= 2);
    if (retriedKeys.length === 0)
      throw new CheckFailed(`expected retries to compare, got ${requests.length > 0 ? "none" : none}`);
    const problems = retriedKeys.flatMap(([k, [first, ...rest]]) =>
      rest
        .filter(
          (r) =>
            !first ||
            !r.body.equals(first.body) ||
            r.headers["content-type"] !== first.headers["content-type"],
        )
        .map(() => `the retry under ${k} carries another body or content type than the first attempt`),
    );
    if (problems.length > 0) throw new CheckFailed(problems.join("; "));
    return `${String(retriedKeys.length)} retried key(s), identical bodies`;
  });
}
