import { createPublicKey, generateKeyPairSync, sign as edSign } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  combineTrustLists,
  generateOperatorKey,
  loadPrivateKey,
  publicJwkOf,
  signTrustList,
  thumbprint,
  TrustListError,
  verifyTrustList,
  type GeneratedKey,
  type TrustListInput,
} from "./trust-list.ts";

const now = new Date("2026-11-22T12:00:00Z");
const operator = generateOperatorKey("op-1");
const attestation = generateOperatorKey("org-a-1");

function list(overrides: Partial<TrustListInput> = {}): TrustListInput {
  return {
    version: 1,
    network: "nl-gp-utrecht",
    sequence: 7,
    issued_at: "2026-11-22T11:00:00Z",
    expires_at: "2026-12-22T11:00:00Z",
    organisations: [
      {
        server_name: "a.example",
        name: "Hospital A",
        identifier: "URA-1",
        attestation_keys: [attestation.publicJwk],
      },
      { server_name: "b.example:8448", name: "GP circle B", identifier: "AGB-2" },
    ],
    ...overrides,
  };
}
const sign = (l: unknown, key: GeneratedKey = operator): string =>
  signTrustList(l, loadPrivateKey(key.privateJwk), key.privateJwk.kid);
const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString("base64url");
/** Signs raw header and payload, bypassing signTrustList's checks: what a buggy or hostile signer could do. */
function signRaw(header: unknown, payload: unknown, key: GeneratedKey = operator): string {
  const input = `${b64(header)}.${b64(payload)}`;
  return `${input}.${edSign(null, Buffer.from(input), loadPrivateKey(key.privateJwk)).toString("base64url")}`;
}
const header = { alg: "EdDSA", typ: "medmesh-trust-list+jws", kid: "op-1" };

describe("signed trust list", () => {
  it("round-trips: signed by the operator, verified with its public key", () => {
    const jws = sign(list());
    const [h] = jws.split(".");
    expect(JSON.parse(Buffer.from(String(h), "base64url").toString())).toEqual(header);
    expect(jws).not.toContain("=");
    const verified = verifyTrustList(jws, [operator.publicJwk], now);
    expect(verified.kid).toBe("op-1");
    expect(verified.payload.sequence).toBe(7);
    expect(verified.payload.organisations.map((o) => o.server_name)).toEqual(["a.example", "b.example:8448"]);
    expect(verified.payload.organisations[1]?.attestation_keys).toEqual([]);
  });

  it("finds the signing key among several operator keys (rotation)", () => {
    const next = generateOperatorKey("op-2");
    const keys = [operator.publicJwk, next.publicJwk];
    expect(verifyTrustList(sign(list(), next), keys, now).kid).toBe("op-2");
    expect(verifyTrustList(sign(list()), keys, now).kid).toBe("op-1");
  });

  it("allows five minutes of clock skew", () => {
    expect(() =>
      verifyTrustList(sign(list({ issued_at: "2026-11-22T12:04:00Z" })), [operator.publicJwk], now),
    ).not.toThrow();
  });

  const cases: [string, () => string, RegExp][] = [
    [
      "a tampered payload",
      () => {
        const [h, , s] = sign(list()).split(".");
        return `${String(h)}.${b64({ ...list(), network: "evil" })}.${String(s)}`;
      },
      /bad signature/,
    ],
    [
      "a tampered signature",
      () => {
        const jws = sign(list());
        const at = jws.length - 10; // a character whose bits all belong to the signature
        return jws.slice(0, at) + (jws[at] === "A" ? "B" : "A") + jws.slice(at + 1);
      },
      /bad signature/,
    ],
    [
      "another key with the same kid",
      () => sign(list(), generateOperatorKey("op-1")),
      /bad signature for key op-1/,
    ],
    ["an unknown kid", () => sign(list(), generateOperatorKey("op-2")), /unknown key op-2/],
    ["alg none", () => `${b64({ ...header, alg: "none" })}.${b64(list())}.`, /unsupported alg "none"/],
    [
      "alg none with a signature",
      () => signRaw({ ...header, alg: "none" }, list()),
      /unsupported alg "none"/,
    ],
    ["another alg", () => signRaw({ ...header, alg: "ES256" }, list()), /unsupported alg "ES256"/],
    ["a missing typ", () => signRaw({ alg: "EdDSA", kid: "op-1" }, list()), /wrong typ undefined/],
    ["another typ", () => signRaw({ ...header, typ: "JWT" }, list()), /wrong typ "JWT"/],
    ["no kid", () => signRaw({ alg: "EdDSA", typ: header.typ }, list()), /names no key/],
    ["critical extensions", () => signRaw({ ...header, crit: ["exp"], exp: 1 }, list()), /crit/],
    [
      "an expired list",
      () => sign(list({ expires_at: "2026-11-22T11:59:00Z" })),
      /expired at 2026-11-22T11:59:00Z/,
    ],
    [
      "a list from the future",
      () => sign(list({ issued_at: "2026-11-22T12:06:00Z" })),
      /issued in the future/,
    ],
    ["two parts", () => "abc.def", /three dot-separated parts/],
    ["four parts", () => `${sign(list())}.x`, /three dot-separated parts/],
    ["garbage", () => "!!.??.**", /header is not base64url/],
    ["padded base64", () => `${b64(header)}=.${b64(list())}.AAAA`, /header is not base64url/],
    [
      "a header that is not JSON",
      () => `${Buffer.from("{alg").toString("base64url")}.${b64(list())}.AAAA`,
      /header is not JSON/,
    ],
    [
      "a header that is not an object",
      () => `${b64(null)}.${b64(list())}.AAAA`,
      /header is not a JSON object/,
    ],
    ["a payload that is not an object", () => signRaw(header, "x"), /invalid list at \(root\)/],
  ];
  for (const [what, make, error] of cases) {
    it(`refuses ${what}`, () => {
      expect(() => verifyTrustList(make(), [operator.publicJwk], now)).toThrow(TrustListError);
      expect(() => verifyTrustList(make(), [operator.publicJwk], now)).toThrow(error);
    });
  }

  it("refuses a correctly signed payload that is not JSON", () => {
    const input = `${b64(header)}.${Buffer.from("not json").toString("base64url")}`;
    const sig = edSign(null, Buffer.from(input), loadPrivateKey(operator.privateJwk)).toString("base64url");
    expect(() => verifyTrustList(`${input}.${sig}`, [operator.publicJwk], now)).toThrow(
      /payload is not JSON/,
    );
  });

  it("refuses schema violations, naming the path, even when correctly signed", () => {
    const verifyRaw =
      (payload: unknown): (() => unknown) =>
      () =>
        verifyTrustList(signRaw(header, payload), [operator.publicJwk], now);
    expect(verifyRaw({ ...list(), sequence: -1 })).toThrow(/invalid list at sequence:/);
    expect(verifyRaw({ ...list(), sequence: 1.5 })).toThrow(/invalid list at sequence:/);
    expect(verifyRaw({ ...list(), version: 2 })).toThrow(/invalid list at version:/);
    expect(verifyRaw({ ...list(), expires_at: "next week" })).toThrow(/invalid list at expires_at:/);
    const { network: _, ...withoutNetwork } = list();
    expect(verifyRaw(withoutNetwork)).toThrow(/invalid list at network:/);
    const badKey = list();
    badKey.organisations[0] = { ...badKey.organisations[0]!, attestation_keys: [{ kty: "RSA" } as never] };
    expect(verifyRaw(badKey)).toThrow(/invalid list at organisations\.0\.attestation_keys\.0\.kty:/);
    const badServer = list();
    badServer.organisations[1] = { ...badServer.organisations[1]!, server_name: "https://b.example" };
    expect(verifyRaw(badServer)).toThrow(
      /invalid list at organisations\.1\.server_name: not a valid Matrix server name/,
    );
  });

  it("refuses a duplicate server_name when signing and when verifying", () => {
    const dup = list();
    dup.organisations.push({ server_name: "a.example", name: "Again", identifier: "URA-3" });
    expect(() => sign(dup)).toThrow(TrustListError);
    expect(() => sign(dup)).toThrow(
      /invalid list at organisations\.2\.server_name: a\.example is listed twice/,
    );
    expect(() => verifyTrustList(signRaw(header, dup), [operator.publicJwk], now)).toThrow(/listed twice/);
  });

  it("signs only with an Ed25519 private key", () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    expect(() => signTrustList(list(), privateKey, "op-1")).toThrow(/Ed25519 private key/);
    expect(() => signTrustList(list(), publicKey, "op-1")).toThrow(/Ed25519 private key/);
    expect(() => loadPrivateKey(operator.publicJwk)).toThrow(/not an Ed25519 private JWK/);
  });
});

describe("operator keys", () => {
  it("defaults the kid to the RFC 7638 thumbprint", () => {
    const key = generateOperatorKey();
    expect(key.publicJwk.kid).toBe(thumbprint(key.publicJwk));
    expect(key.privateJwk.kid).toBe(key.publicJwk.kid);
    expect(key.publicJwk.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    // RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
    expect(thumbprint({ kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo" })).toBe(
      "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k",
    );
  });

  it("derives the public JWK from the private one, without d", () => {
    const pub = publicJwkOf(operator.privateJwk);
    expect(pub).toEqual(operator.publicJwk);
    expect(pub).not.toHaveProperty("d");
    expect(createPublicKey({ key: pub, format: "jwk" }).asymmetricKeyType).toBe("ed25519");
  });
});

describe("combined networks", () => {
  const hospitalKey = generateOperatorKey("op-hospital");
  const gp = (): ReturnType<typeof verifyTrustList> =>
    verifyTrustList(sign(list()), [operator.publicJwk], now);
  const other = generateOperatorKey("org-a-2");
  const hospital = (): ReturnType<typeof verifyTrustList> =>
    verifyTrustList(
      sign(
        list({
          network: "hospital-group",
          organisations: [
            {
              server_name: "a.example",
              name: "Hospital A (group)",
              identifier: "KvK-1",
              // One key both networks know, one only the hospital group knows.
              attestation_keys: [attestation.publicJwk, other.publicJwk],
            },
            { server_name: "c.example", name: "Pharmacy C", identifier: "URA-9" },
          ],
        }),
        hospitalKey,
      ),
      [hospitalKey.publicJwk],
      now,
    );

  it("is the union of the members, with the keys and networks of both for an overlap", () => {
    const combined = combineTrustLists([gp(), hospital()]);
    expect(combined.servers()).toEqual(["a.example", "b.example:8448", "c.example"]);
    expect(combined.isTrusted("c.example")).toBe(true);
    expect(combined.isTrusted("d.example")).toBe(false);
    expect(combined.attestationKeys("a.example").map((k) => k.kid)).toEqual(["org-a-1", "org-a-2"]);
    expect(combined.networksOf("a.example")).toEqual(["nl-gp-utrecht", "hospital-group"]);
    expect(combined.organisation("a.example")).toEqual({
      server_name: "a.example",
      name: "Hospital A",
      identifier: "URA-1",
      networks: ["nl-gp-utrecht", "hospital-group"],
      attestation_keys: [attestation.publicJwk, other.publicJwk],
      insured_persons: false,
    });
    expect(combined.organisation("c.example")?.networks).toEqual(["hospital-group"]);
    expect(combined.organisation("d.example")).toBeUndefined();
    expect(combined.attestationKeys("d.example")).toEqual([]);
  });

  it("lets the first network's key win a kid clash", () => {
    const impostor = { ...generateOperatorKey("org-a-1").publicJwk };
    const clash = verifyTrustList(
      sign(
        list({
          network: "other",
          organisations: [
            { server_name: "a.example", name: "A", identifier: "X", attestation_keys: [impostor] },
          ],
        }),
      ),
      [operator.publicJwk],
      now,
    );
    expect(combineTrustLists([gp(), clash]).attestationKeys("a.example")).toEqual([attestation.publicJwk]);
  });

  it("counts only the newest list of a network", () => {
    const newer = verifyTrustList(
      sign(
        list({ sequence: 8, organisations: [{ server_name: "a.example", name: "A", identifier: "URA-1" }] }),
      ),
      [operator.publicJwk],
      now,
    );
    expect(combineTrustLists([gp(), newer]).servers()).toEqual(["a.example"]);
    expect(combineTrustLists([newer, gp()]).servers()).toEqual(["a.example"]);
  });

  it("hands out copies", () => {
    const combined = combineTrustLists([gp()]);
    combined.servers().push("evil.example");
    combined.attestationKeys("a.example")[0]!.x = "A".repeat(43);
    combined.organisation("a.example")?.networks.push("evil");
    expect(combined.servers()).toEqual(["a.example", "b.example:8448"]);
    expect(combined.attestationKeys("a.example")).toEqual([attestation.publicJwk]);
    expect(combined.networksOf("a.example")).toEqual(["nl-gp-utrecht"]);
  });

  it("is empty for no lists", () => {
    expect(combineTrustLists([]).servers()).toEqual([]);
  });
});
