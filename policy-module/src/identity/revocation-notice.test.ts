import { generateKeyPairSync } from "node:crypto";
import { describe, expect, it } from "vitest";
import { publicJwkOf } from "../trust/trust-list.ts";
import { signAttestation } from "./attestation.ts";
import { signRevocation, verifyRevocation, type RevocationNotice } from "./revocation-notice.ts";

const keyPair = (kid: string) => {
  const { privateKey } = generateKeyPairSync("ed25519");
  return { key: { kid, privateKey }, jwk: { ...publicJwkOf(privateKey.export({ format: "jwk" })), kid } };
};
const a = keyPair("a-1");
const notice = (over: Partial<RevocationNotice> = {}): RevocationNotice => ({
  iss: "a.example",
  sub: "@ann:a.example",
  status: "revoked",
  revoked_at: 1_800_000_000,
  jti: "jti-0123456789",
  iat: 1_800_000_000,
  ...over,
});

describe("revocation notices", () => {
  it("verify with the issuer's listed key", () => {
    expect(verifyRevocation(signRevocation(a.key, notice()), "a.example", [a.jwk])).toMatchObject({
      sub: "@ann:a.example",
      status: "revoked",
    });
  });

  it("refuse a forged signature, another issuer's user, a wrong issuer, and other JWS types", () => {
    const other = keyPair("a-1"); // claims A's key ID
    const bad =
      (jws: string, issuer = "a.example") =>
      () =>
        verifyRevocation(jws, issuer, [a.jwk]);
    expect(bad(signRevocation(other.key, notice()))).toThrow(/bad signature/);
    expect(bad(signRevocation(a.key, notice({ sub: "@bea:b.example" })))).toThrow(
      /only revoke its own users/,
    );
    expect(bad(signRevocation(a.key, notice({ iss: "b.example" })))).toThrow(/issued by b.example/);
    expect(bad(signRevocation(a.key, notice()), "b.example")).toThrow(/issued by a.example, not b.example/);
    expect(bad(signRevocation(a.key, notice({ jti: "x" })))).toThrow(/incomplete/);
    expect(
      bad(signRevocation(a.key, { ...notice(), status: "verified" } as unknown as RevocationNotice)),
    ).toThrow(/status must be revoked/);
    const attestation = signAttestation(a.key, {
      iss: "a.example",
      sub: "@ann:a.example",
      profession: "physician",
      registry: "BIG",
      verified_at: "2026-01-01T00:00:00Z",
      exp: 1_900_000_000,
      iat: 1_800_000_000,
    });
    expect(bad(attestation)).toThrow(/not a MedMesh revocation notice/);
    expect(bad("garbage")).toThrow(/not a JWS/);
  });
});
