import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  contentDigest,
  parseSignatureInput,
  signatureBase,
  signRequest,
  verifyRequest,
  type SignableRequest,
} from "./signatures.ts";

// RFC 9421 Appendix B.1.4 test key and the B.2.6 example (Ed25519), byte for byte.
const RFC_KEY = createPrivateKey(
  "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF\n-----END PRIVATE KEY-----\n",
);
const RFC_REQUEST: SignableRequest = {
  method: "POST",
  url: "https://example.com/foo?param=Value&Pet=dog",
  headers: {
    Host: "example.com",
    Date: "Tue, 20 Apr 2021 02:07:55 GMT",
    "Content-Type": "application/json",
    "Content-Digest":
      "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
    "Content-Length": "18",
  },
  body: Buffer.from('{"hello": "world"}'),
};
const RFC_COMPONENTS = ["date", "@method", "@path", "@authority", "content-type", "content-length"];
const RFC_PARAMS =
  '("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"';
const RFC_BASE = [
  '"date": Tue, 20 Apr 2021 02:07:55 GMT',
  '"@method": POST',
  '"@path": /foo',
  '"@authority": example.com',
  '"content-type": application/json',
  '"content-length": 18',
  `"@signature-params": ${RFC_PARAMS}`,
].join("\n");
const RFC_SIGNATURE =
  "wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==";

describe("HTTP Message Signatures (RFC 9421, Ed25519)", () => {
  it("builds the RFC's signature base and verifies the RFC's signature (B.2.6)", () => {
    expect(signatureBase(RFC_REQUEST, RFC_COMPONENTS, RFC_PARAMS)).toBe(RFC_BASE);
    const signed = {
      ...RFC_REQUEST,
      headers: {
        ...RFC_REQUEST.headers,
        "Signature-Input": `sig-b26=${RFC_PARAMS}`,
        Signature: `sig-b26=:${RFC_SIGNATURE}:`,
      },
    };
    const result = verifyRequest(signed, {
      key: (id) => (id === "test-key-ed25519" ? createPublicKey(RFC_KEY) : undefined),
      required: ["@method"],
      maxSkewSeconds: 60,
      now: 1618884473_000 + 10_000,
    });
    expect(result).toEqual({ ok: true, keyId: "test-key-ed25519", created: 1618884473, nonce: undefined });
  });

  const vendor = generateKeyPairSync("ed25519");
  const body = Buffer.from(JSON.stringify({ type: "message", text: "hello" }));
  const request = (): SignableRequest => ({
    method: "PUT",
    url: "https://medmesh.hospital-a.example/_medmesh/interop/v1/events/idem-1",
    headers: {
      "content-type": "application/json",
      "idempotency-key": "idem-1",
      "content-digest": contentDigest(body),
    },
    body,
  });
  const COVERED = ["@method", "@target-uri", "content-type", "content-digest", "idempotency-key"];
  const signed = (req = request(), created?: number): SignableRequest => ({
    ...req,
    headers: {
      ...req.headers,
      ...signRequest(req, {
        keyId: "vendor-1",
        privateKey: vendor.privateKey,
        components: COVERED,
        ...(created ? { created } : {}),
        nonce: "n-1",
      }),
    },
  });
  const check = (req: SignableRequest, now?: number) =>
    verifyRequest(req, {
      key: (id) => (id === "vendor-1" ? vendor.publicKey : undefined),
      required: COVERED,
      maxSkewSeconds: 300,
      ...(now ? { now } : {}),
    });

  it("round-trips a signed request and refuses every tampered part", () => {
    expect(check(signed())).toMatchObject({ ok: true, keyId: "vendor-1", nonce: "n-1" });
    const s = signed();
    expect(check({ ...s, body: Buffer.from('{"type":"message","text":"hellO"}') })).toMatchObject({
      ok: false,
      reason: "Content-Digest does not match the body",
    });
    expect(check({ ...s, method: "POST" })).toMatchObject({
      ok: false,
      reason: "the signature does not verify",
    });
    expect(check({ ...s, url: s.url.replace("idem-1", "idem-2") })).toMatchObject({ ok: false });
    expect(check({ ...s, headers: { ...s.headers, "idempotency-key": "idem-2" } })).toMatchObject({
      ok: false,
    });
    const other = generateKeyPairSync("ed25519");
    const forged = {
      ...request(),
      headers: {
        ...request().headers,
        ...signRequest(request(), { keyId: "vendor-1", privateKey: other.privateKey, components: COVERED }),
      },
    };
    expect(check(forged)).toMatchObject({ ok: false, reason: "the signature does not verify" });
  });

  it("refuses unsigned, unknown keys, stale or future signatures, and uncovered components", () => {
    expect(check(request())).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/not signed/) as unknown,
    });
    const unknown = {
      ...request(),
      headers: {
        ...request().headers,
        ...signRequest(request(), { keyId: "vendor-9", privateKey: vendor.privateKey, components: COVERED }),
      },
    };
    expect(check(unknown)).toMatchObject({ ok: false, reason: "unknown key vendor-9" });
    const now = Date.now();
    expect(check(signed(request(), Math.floor(now / 1000) - 301))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/outside ±300 s/) as unknown,
    });
    expect(check(signed(request(), Math.floor(now / 1000) + 301))).toMatchObject({ ok: false });
    const partial = {
      ...request(),
      headers: {
        ...request().headers,
        ...signRequest(request(), {
          keyId: "vendor-1",
          privateKey: vendor.privateKey,
          components: ["@method", "@target-uri"],
        }),
      },
    };
    expect(check(partial)).toMatchObject({
      ok: false,
      reason: "the signature must cover content-type, content-digest, idempotency-key",
    });
  });

  it("refuses malformed or doubled signature fields instead of guessing", () => {
    const s = signed();
    for (const input of [
      'sig1=("@method");created=1;keyid="a", sig2=("@method");created=1;keyid="a"',
      "sig1=@method",
      'sig1=("@method" "@method");created=1;keyid="a"',
    ])
      expect(check({ ...s, headers: { ...s.headers, "signature-input": input } })).toMatchObject({
        ok: false,
      });
    expect(check({ ...s, headers: { ...s.headers, signature: "sig1=:not base64!:" } })).toMatchObject({
      ok: false,
    });
    expect(() => parseSignatureInput('sig1=("@method");created=1;created=2')).toThrow(/twice/);
  });
});
