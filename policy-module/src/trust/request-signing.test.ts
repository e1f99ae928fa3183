import { generateKeyPairSync, type JsonWebKey } from "node:crypto";
import { describe, expect, it } from "vitest";
import { parseXMatrix } from "../proxy/index.ts";
import { canonicalJson, signRequest, verifyRequest, type OrgKey } from "./request-signing.ts";

function orgKey(kid: string): { key: OrgKey; publicJwk: JsonWebKey } {
  const { privateKey, publicKey } = generateKeyPairSync("ed25519");
  return {
    key: { kid, privateKey },
    publicJwk: { ...publicKey.export({ format: "jwk" }), kid },
  };
}

describe("peer request signing", () => {
  const req = {
    method: "GET",
    uri: "/_medmesh/fhir/r4/Practitioner?name=ann",
    origin: "a.example",
    destination: "b.example",
  };

  it("writes canonical JSON with sorted keys at every depth", () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { f: 1, e: 0 }], c: "x" } })).toBe(
      '{"a":{"c":"x","d":[2,{"e":0,"f":1}]},"b":1}',
    );
  });

  it("verifies a signature made with the listed key, and nothing else", () => {
    const a = orgKey("a1");
    const other = orgKey("a1");
    const auth = parseXMatrix(signRequest(a.key, req));
    expect(auth).toMatchObject({ origin: "a.example", destination: "b.example", key: "ed25519:a1" });
    if (!auth) throw new Error("unparsable header");
    expect(verifyRequest(req, auth, [a.publicJwk])).toBe(true);
    expect(verifyRequest({ ...req, uri: req.uri + "x" }, auth, [a.publicJwk])).toBe(false); // tampered
    expect(verifyRequest({ ...req, origin: "c.example" }, auth, [a.publicJwk])).toBe(false); // forged origin
    expect(verifyRequest(req, auth, [other.publicJwk])).toBe(false); // same kid, other key
    expect(verifyRequest(req, { ...auth, key: "ed25519:zz" }, [a.publicJwk])).toBe(false); // unknown key
    expect(verifyRequest(req, { ...auth, sig: "AAAA" }, [a.publicJwk])).toBe(false);
  });
});
