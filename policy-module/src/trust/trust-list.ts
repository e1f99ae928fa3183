import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
  type JsonWebKey,
} from "node:crypto";
import { z } from "zod";

const Ed25519PublicJwk = z.object({
  kty: z.literal("OKP"),
  crv: z.literal("Ed25519"),
  x: z.string().regex(/^[A-Za-z0-9_-]{43}$/, "must be a base64url Ed25519 public key"),
  kid: z.string().min(1),
});

export const TrustListSchema = z
  .object({
    version: z.literal(1),
    network: z.string().min(1),
    sequence: z.number().int().positive(),
    issued_at: z.iso.datetime(),
    expires_at: z.iso.datetime(),
    organisations: z.array(
      z.object({
        server_name: z.string().min(1),
        name: z.string().min(1),
        identifier: z.string().min(1),
        attestation_keys: z.array(Ed25519PublicJwk).default([]),
      }),
    ),
  })
  .superRefine((list, ctx) => {
    const seen = new Set<string>();
    list.organisations.forEach((o, i) => {
      if (seen.has(o.server_name)) {
        ctx.addIssue({
          code: "custom",
          path: ["organisations", i, "server_name"],
          message: `${o.server_name} is listed twice`,
        });
      }
      seen.add(o.server_name);
    });
  });
export type TrustList = z.output<typeof TrustListSchema>;
export type TrustListInput = z.input<typeof TrustListSchema>;

export const JWS_TYPE = "medmesh-trust-list+jws";
const CLOCK_SKEW_MS = 5 * 60_000;

export class TrustListError extends Error {
  override name = "TrustListError";
}

export interface VerifiedTrustList {
  payload: TrustList;
  kid: string;
}

const b64 = (data: Buffer | string): string => Buffer.from(data).toString("base64url");

/** A compact JWS (RFC 7515, EdDSA) over the list (validated first), signed by a network operator key. */
export function signTrustList(list: unknown, privateKey: KeyObject, kid: string): string {
  const payload = TrustListSchema.parse(list);
  const header = b64(JSON.stringify({ alg: "EdDSA", typ: JWS_TYPE, kid }));
  const body = b64(JSON.stringify(payload));
  const signature = sign(null, Buffer.from(`${header}.${body}`), privateKey);
  return `${header}.${body}.${b64(signature)}`;
}

/** Checks signature, header, schema and validity period; throws TrustListError naming what is wrong. */
export function verifyTrustList(
  jws: string,
  operatorKeys: readonly JsonWebKey[],
  now = new Date(),
): VerifiedTrustList {
  const parts = jws.trim().split(".");
  if (parts.length !== 3) throw new TrustListError("not a compact JWS (three dot-separated parts)");
  const [h = "", p = "", s = ""] = parts;
  const header = decodeJson(h, "header") as { alg?: unknown; typ?: unknown; kid?: unknown };
  if (header.alg !== "EdDSA")
    throw new TrustListError(`unsupported alg ${JSON.stringify(header.alg)} (EdDSA required)`);
  if (header.typ !== JWS_TYPE)
    throw new TrustListError(`wrong typ ${JSON.stringify(header.typ)} (${JWS_TYPE} required)`);
  if (typeof header.kid !== "string") throw new TrustListError("the header names no key (kid)");
  const jwk = operatorKeys.find((k) => (k as { kid?: string }).kid === header.kid);
  if (!jwk) throw new TrustListError(`signed with unknown key ${header.kid}`);
  const signature = Buffer.from(s, "base64url");
  if (signature.length !== 64 || !verify(null, Buffer.from(`${h}.${p}`), publicKeyOf(jwk), signature)) {
    throw new TrustListError(`bad signature for key ${header.kid}`);
  }
  const parsed = TrustListSchema.safeParse(decodeJson(p, "payload"));
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new TrustListError(
      `invalid list at ${issue?.path.join(".") || "(root)"}: ${issue?.message ?? "?"}`,
    );
  }
  const list = parsed.data;
  if (Date.parse(list.expires_at) <= now.getTime()) throw new TrustListError(`expired at ${list.expires_at}`);
  if (Date.parse(list.issued_at) > now.getTime() + CLOCK_SKEW_MS) {
    throw new TrustListError(`issued in the future (${list.issued_at})`);
  }
  return { payload: list, kid: header.kid };
}

function decodeJson(part: string, what: string): unknown {
  if (!/^[A-Za-z0-9_-]*$/.test(part)) throw new TrustListError(`${what} is not base64url`);
  try {
    return JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
  } catch {
    throw new TrustListError(`${what} is not JSON`);
  }
}

function publicKeyOf(jwk: JsonWebKey): KeyObject {
  try {
    return createPublicKey({ key: { kty: jwk.kty, crv: jwk.crv, x: jwk.x } as JsonWebKey, format: "jwk" });
  } catch {
    throw new TrustListError("an operator key is not a valid Ed25519 JWK");
  }
}

/** RFC 7638 thumbprint of an Ed25519 public key: a stable key id. */
export function thumbprint(jwk: JsonWebKey): string {
  return createHash("sha256")
    .update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x }))
    .digest("base64url");
}

export function generateKey(kid?: string): {
  privateJwk: JsonWebKey & { kid: string };
  publicJwk: JsonWebKey & { kid: string };
} {
  const { privateKey } = generateKeyPairSync("ed25519");
  const priv = privateKey.export({ format: "jwk" });
  const id = kid ?? thumbprint(priv);
  return { privateJwk: { ...priv, kid: id }, publicJwk: { ...publicJwkOf(priv), kid: id } };
}

export function publicJwkOf(jwk: JsonWebKey & { kid?: string }): JsonWebKey & { kid?: string } {
  const pub: JsonWebKey & { kid?: string } = { kty: "OKP", crv: "Ed25519" };
  if (jwk.x !== undefined) pub.x = jwk.x;
  if (jwk.kid !== undefined) pub.kid = jwk.kid;
  return pub;
}

export function loadPrivateKey(jwk: JsonWebKey): KeyObject {
  return createPrivateKey({ key: jwk, format: "jwk" });
}

export interface CombinedTrust {
  isTrusted(serverName: string): boolean;
  servers(): string[];
  attestationKeys(serverName: string): JsonWebKey[];
  networksOf(serverName: string): string[];
}

/** Several networks (a regional GP network, a hospital group) combined: the union of their members. */
export function combineTrustLists(lists: readonly VerifiedTrustList[]): CombinedTrust {
  const byServer = new Map<string, { keys: Map<string, JsonWebKey>; networks: string[] }>();
  for (const { payload } of lists) {
    for (const org of payload.organisations) {
      const entry = byServer.get(org.server_name) ?? { keys: new Map<string, JsonWebKey>(), networks: [] };
      for (const k of org.attestation_keys) entry.keys.set(k.kid, k);
      entry.networks.push(payload.network);
      byServer.set(org.server_name, entry);
    }
  }
  const servers = [...byServer.keys()].sort();
  return {
    isTrusted: (s) => byServer.has(s),
    servers: () => [...servers],
    attestationKeys: (s) => [...(byServer.get(s)?.keys.values() ?? [])],
    networksOf: (s) => [...(byServer.get(s)?.networks ?? [])],
  };
}
