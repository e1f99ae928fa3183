import { sign as edSign } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  combineTrustLists,
  generateKey,
  loadPrivateKey,
  signTrustList,
  verifyTrustList,
  type TrustListInput,
} from "./trust-list.ts";

const now = new Date("2026-11-22T12:00:00Z");
const operator = generateKey("op-1");
const attestation = generateKey("org-a-1");

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
        attestation_keys: [attestation.publicJwk as never],
      },
      { server_name: "b.example:8448", name: "GP circle B", identifier: "URA-2" },
    ],
    ...overrides,
  };
}
const sign = (l: unknown, key = operator): string =>
  signTrustList(l, loadPrivateKey(key.privateJwk), key.privateJwk.kid);

describe("signed trust list", () => {
  it("round-trips: signed by the operator, verified with its public key", () => {
    const verified = verifyTrustList(sign(list()), [operator.publicJwk], now);
    expect(verified.kid).toBe("op-1");
    expect(verified.payload.organisations.map((o) => o.server_name)).toEqual(["a.example", "b.example:8448"]);
  });

  const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString("base64url");
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
    ["another key with the same kid", () => sign(list(), { ...generateKey("op-1") }), /bad signature/],
    ["an unknown kid", () => sign(list(), generateKey("op-2")), /unknown key op-2/],
    [
      "alg none",
      () => `${b64({ alg: "none", typ: "medmesh-trust-list+jws", kid: "op-1" })}.${b64(list())}.`,
      /unsupported alg "none"/,
    ],
    ["an expired list", () => sign(list({ expires_at: "2026-11-22T11:59:00Z" })), /expired/],
    ["a list from the future", () => sign(list({ issued_at: "2026-11-22T12:30:00Z" })), /future/],
    ["two parts", () => "abc.def", /three dot-separated parts/],
    ["garbage", () => "!!.??.**", /not base64url/],
  ];
  for (const [what, make, error] of cases) {
    it(`refuses ${what}`, () => {
      expect(() => verifyTrustList(make(), [operator.publicJwk], now)).toThrow(error);
    });
  }

  it("refuses to sign (and verify) a schema violation, naming the path", () => {
    const dup = list();
    dup.organisations.push({ server_name: "a.example", name: "Again", identifier: "URA-3" });
    expect(() => sign(dup)).toThrow(/listed twice/);
    // Correctly signed, but not a valid list: signed over the raw bytes, bypassing signTrustList.
    const [h] = sign(list()).split(".");
    const forged = `${String(h)}.${b64({ ...list(), sequence: -1 })}`;
    const sig = edSign(null, Buffer.from(forged), loadPrivateKey(operator.privateJwk)).toString("base64url");
    expect(() => verifyTrustList(`${forged}.${sig}`, [operator.publicJwk], now)).toThrow(
      /invalid list at sequence/,
    );
  });

  it("combines networks: union of members, keys of both", () => {
    const first = verifyTrustList(sign(list()), [operator.publicJwk], now);
    const other = generateKey("org-a-2");
    const second = verifyTrustList(
      sign(
        list({
          network: "hospital-group",
          organisations: [
            {
              server_name: "a.example",
              name: "Hospital A",
              identifier: "URA-1",
              attestation_keys: [other.publicJwk as never],
            },
            { server_name: "c.example", name: "Pharmacy C", identifier: "URA-9" },
          ],
        }),
      ),
      [operator.publicJwk],
      now,
    );
    const combined = combineTrustLists([first, second]);
    expect(combined.servers()).toEqual(["a.example", "b.example:8448", "c.example"]);
    expect(combined.isTrusted("d.example")).toBe(false);
    expect(
      combined
        .attestationKeys("a.example")
        .map((k) => (k as { kid: string }).kid)
        .sort(),
    ).toEqual(["org-a-1", "org-a-2"]);
    expect(combined.networksOf("a.example")).toEqual(["nl-gp-utrecht", "hospital-group"]);
  });
});
