import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { publicJwkOf } from "../trust/trust-list.ts";
import { signAttestation, verifyAttestation, type Attestation } from "./attestation.ts";

function orgKey(kid: string) {
  const { privateKey } = generateKeyPairSync("ed25519");
  return { key: { kid, privateKey }, jwk: { ...publicJwkOf(privateKey.export({ format: "jwk" })), kid } };
}

const now = new Date("2026-11-22T12:00:00Z");
const a = orgKey("a-1");
const claim = (over: Partial<Attestation> = {}): Attestation => ({
  iss: "a.example",
  sub: "@ann:a.example",
  profession: "physician",
  registry: "BIG",
  verified_at: "2026-11-01T00:00:00Z",
  exp: Math.floor(now.getTime() / 1000) + 3600,
  iat: Math.floor(now.getTime() / 1000),
  ...over,
});
const check = (jws: string, keys = [a.jwk], subject?: string) =>
  verifyAttestation(jws, { issuer: "a.example", ...(subject ? { subject } : {}) }, keys, now);

describe("attestations", () => {
  it("verify with the issuer's key from the trust list, and carry no registration number", () => {
    const jws = signAttestation(a.key, claim());
    expect(check(jws, [a.jwk], "@ann:a.example")).toMatchObject({
      sub: "@ann:a.example",
      profession: "physician",
    });
    const payload = JSON.parse(Buffer.from(jws.split(".")[1] ?? "", "base64url").toString()) as object;
    expect(Object.keys(payload).sort()).toEqual([
      "exp",
      "iat",
      "iss",
      "profession",
      "registry",
      "sub",
      "verified_at",
    ]);
  });

  it("say who proved the identity when the organisation's SSO did, and stay readable without it", () => {
    const proven = check(signAttestation(a.key, claim({ identity_proven_by: "Hospital A" })));
    expect(proven.identity_proven_by).toBe("Hospital A");
    // An attestation from before the field existed (or of a self-registered clinician) still verifies.
    expect(check(signAttestation(a.key, claim())).identity_proven_by).toBeUndefined();
    const odd = { ...claim(), identity_proven_by: 42 } as unknown as Attestation;
    expect(() => check(signAttestation(a.key, odd))).toThrow(/incomplete attestation/);
  });

  it("refuse forged, expired, unknown-key, foreign-user and wrong-subject attestations", () => {
    const jws = signAttestation(a.key, claim());
    const [h, , s] = jws.split(".");
    const forged = `${String(h)}.${Buffer.from(JSON.stringify(claim({ profession: "surgeon" }))).toString("base64url")}.${String(s)}`;
    expect(() => check(forged)).toThrow(/bad signature/);
    expect(() => check(signAttestation(a.key, claim({ exp: Math.floor(now.getTime() / 1000) - 1 })))).toThrow(
      /expired/,
    );
    const stranger = orgKey("a-1"); // same kid, another key
    expect(() => check(signAttestation(stranger.key, claim()))).toThrow(/bad signature/);
    expect(() => check(signAttestation(orgKey("x-9").key, claim()))).toThrow(
      /key the trust list does not hold/,
    );
    expect(() => check(signAttestation(a.key, claim({ sub: "@bob:b.example" })))).toThrow(
      /only attest its own users/,
    );
    expect(() => check(jws, [a.jwk], "@other:a.example")).toThrow(/not @other:a.example/);
    expect(() => check("garbage")).toThrow(/not a JWS|not a MedMesh attestation/);
  });
});
