import { createHash, sign, timingSafeEqual, verify, type KeyObject } from "node:crypto";

/**
 * HTTP Message Signatures (RFC 9421) with Ed25519, and Content-Digest (RFC 9530, sha-256): what
 * every interop API request and webhook delivery carries. Only what the interop API needs:
 * derived components `@method`, `@target-uri`, `@authority`, `@scheme`, `@path`, `@query`, and
 * header fields without parameters. Anything else in a signature is refused, not ignored.
 */

export interface SignableRequest {
  method: string;
  /** The full target URI as the client addressed it. */
  url: string;
  /** Header fields, names in any case. */
  headers: Readonly<Record<string, string | undefined>>;
  body?: Buffer;
}

const DERIVED = new Set(["@method", "@target-uri", "@authority", "@scheme", "@path", "@query"]);

export const contentDigest = (body: Buffer): string =>
  `sha-256=:${createHash("sha256").update(body).digest("base64")}:`;

function header(req: SignableRequest, name: string): string | undefined {
  for (const [k, v] of Object.entries(req.headers)) if (k.toLowerCase() === name) return v;
  return undefined;
}

function componentValue(req: SignableRequest, name: string): string {
  const url = new URL(req.url);
  switch (name) {
    case "@method":
      return req.method.toUpperCase();
    case "@target-uri":
      return req.url;
    case "@authority":
      return url.host.toLowerCase();
    case "@scheme":
      return url.protocol.slice(0, -1).toLowerCase();
    case "@path":
      return url.pathname;
    case "@query":
      return url.search === "" ? "?" : url.search;
    default: {
      const v = header(req, name);
      if (v === undefined) throw new SignatureError(`the signed header ${name} is missing`);
      // Obsolete line folding and surrounding whitespace are not part of the value (RFC 9421 §2.1).
      return v.replace(/\s*\r?\n\s*/g, " ").trim();
    }
  }
}

export class SignatureError extends Error {
  override name = "SignatureError";
}

/** The signature base (RFC 9421 §2.5) for the covered components and the serialized parameters. */
export function signatureBase(req: SignableRequest, components: readonly string[], params: string): string {
  const lines = components.map((c) => {
    if (!DERIVED.has(c) && !/^[a-z0-9!#$%&'*+.^_`|~-]+$/.test(c))
      throw new SignatureError(`unsupported covered component ${c}`);
    return `"${c}": ${componentValue(req, c)}`;
  });
  return [...lines, `"@signature-params": ${params}`].join("\n");
}

const quote = (s: string): string => `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`;

export interface SignOptions {
  keyId: string;
  privateKey: KeyObject;
  components: readonly string[];
  created?: number;
  nonce?: string;
  label?: string;
}

/** The Signature-Input and Signature fields for a request (Ed25519). */
export function signRequest(
  req: SignableRequest,
  o: SignOptions,
): { "signature-input": string; signature: string } {
  const label = o.label ?? "sig1";
  const created = o.created ?? Math.floor(Date.now() / 1000);
  const params =
    `(${o.components.map(quote).join(" ")});created=${String(created)};keyid=${quote(o.keyId)};alg="ed25519"` +
    (o.nonce === undefined ? "" : `;nonce=${quote(o.nonce)}`);
  const signature = sign(null, Buffer.from(signatureBase(req, o.components, params)), o.privateKey);
  return { "signature-input": `${label}=${params}`, signature: `${label}=:${signature.toString("base64")}:` };
}

export interface VerifyOptions {
  /** The public key for a key ID, or undefined when unknown. */
  key(keyId: string): KeyObject | undefined;
  /** Components every signature must cover. */
  required: readonly string[];
  /** How old (and how far in the future) `created` may be. */
  maxSkewSeconds: number;
  now?: number;
}

export type Verified =
  { ok: true; keyId: string; created: number; nonce: string | undefined } | { ok: false; reason: string };

/**
 * Checks a request's signature: exactly one signature, a known key, `alg` ed25519 if given,
 * `created` within the window, every required component covered, Content-Digest matching the body
 * when covered, and the Ed25519 signature over the base.
 */
export function verifyRequest(req: SignableRequest, o: VerifyOptions): Verified {
  try {
    const input = header(req, "signature-input");
    const sig = header(req, "signature");
    if (!input || !sig)
      return { ok: false, reason: "the request is not signed (Signature-Input and Signature are required)" };
    const parsed = parseSignatureInput(input);
    const value = parseSignature(sig);
    if (parsed.label !== value.label)
      return { ok: false, reason: "Signature and Signature-Input name different signatures" };
    const keyId = parsed.params.keyid;
    if (typeof keyId !== "string") return { ok: false, reason: "the signature has no keyid" };
    const key = o.key(keyId);
    if (!key) return { ok: false, reason: `unknown key ${keyId}` };
    if (parsed.params.alg !== undefined && parsed.params.alg !== "ed25519")
      return { ok: false, reason: `unsupported alg ${String(parsed.params.alg)}` };
    const created = parsed.params.created;
    if (typeof created !== "number") return { ok: false, reason: "the signature has no created time" };
    const now = Math.floor((o.now ?? Date.now()) / 1000);
    if (Math.abs(now - created) > o.maxSkewSeconds)
      return {
        ok: false,
        reason: `the signature was created ${String(now - created)} s from now, outside ±${String(o.maxSkewSeconds)} s`,
      };
    const missing = o.required.filter((c) => !parsed.components.includes(c));
    if (missing.length > 0) return { ok: false, reason: `the signature must cover ${missing.join(", ")}` };
    if (parsed.components.includes("content-digest")) {
      const got = header(req, "content-digest") ?? "";
      const want = contentDigest(req.body ?? Buffer.alloc(0));
      const a = Buffer.from(got);
      const b = Buffer.from(want);
      if (a.length !== b.length || !timingSafeEqual(a, b))
        return { ok: false, reason: "Content-Digest does not match the body" };
    }
    const base = signatureBase(req, parsed.components, parsed.rawParams);
    if (!verify(null, Buffer.from(base), key, value.signature))
      return { ok: false, reason: "the signature does not verify" };
    const nonce = parsed.params.nonce;
    return { ok: true, keyId, created, nonce: typeof nonce === "string" ? nonce : undefined };
  } catch (err) {
    if (err instanceof SignatureError) return { ok: false, reason: err.message };
    throw err;
  }
}

/** `label=("c1" "c2");p1=1;p2="x"` — one member, strictly (RFC 8941 subset). */
export function parseSignatureInput(field: string): {
  label: string;
  components: string[];
  params: Record<string, string | number>;
  rawParams: string;
} {
  const m =
    /^\s*([a-z*][a-z0-9_\-.*]*)=(\((?:"[^"\\]*"(?: "[^"\\]*")*)?\)((?:;[a-z*][a-z0-9_\-.*]*=(?:-?\d{1,15}|"(?:[^"\\]|\\.)*"))*))\s*$/.exec(
      field,
    );
  if (!m) throw new SignatureError("Signature-Input is malformed or holds more than one signature");
  const [, label = "", rawParams = "", paramText = ""] = m;
  const components = [...rawParams.slice(1, rawParams.indexOf(")")).matchAll(/"([^"]*)"/g)].map(
    (x) => x[1] ?? "",
  );
  if (new Set(components).size !== components.length)
    throw new SignatureError("a component is covered twice");
  const params: Record<string, string | number> = {};
  for (const p of paramText.matchAll(/;([a-z*][a-z0-9_\-.*]*)=(-?\d{1,15}|"((?:[^"\\]|\\.)*)")/g)) {
    const name = p[1] ?? "";
    if (name in params) throw new SignatureError(`the parameter ${name} appears twice`);
    params[name] = p[3] !== undefined ? p[3].replace(/\\(.)/g, "$1") : Number(p[2]);
  }
  return { label, components, params, rawParams };
}

function parseSignature(field: string): { label: string; signature: Buffer } {
  const m = /^\s*([a-z*][a-z0-9_\-.*]*)=:([A-Za-z0-9+/]+={0,2}):\s*$/.exec(field);
  if (!m) throw new SignatureError("Signature is malformed or holds more than one signature");
  return { label: m[1] ?? "", signature: Buffer.from(m[2] ?? "", "base64") };
}
