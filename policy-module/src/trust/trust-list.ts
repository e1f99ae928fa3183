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
import { ServerNameSchema } from "@medmesh/common";
import { z } from "zod";

/** An Ed25519 public key as a JWK (RFC 8037); the kid is how signatures name the key. */
export const Ed25519PublicJwkSchema = z.object({
  kty: z.literal("OKP"),
  crv: z.literal("Ed25519"),
  x: z.string().regex(/^[A-Za-z0-9_-]{43}$/, "must be a base64url Ed25519 public key"),
  kid: z.string().min(1),
});
export type Ed25519PublicJwk = z.output<typeof Ed25519PublicJwkSchema>;

// Offsets are allowed: another operator's tooling may well write local time with an offset.
const Timestamp = z.iso.datetime({ offset: true });

export const TrustListSchema = z
  .object({
    version: z.literal(1),
    network: z.string().min(1),
    sequence: z.number().int().positive(),
    issued_at: Timestamp,
    expires_at: Timestamp,
    organisations: z.array(
      z.object({
        server_name: ServerNameSchema,
        name: z.string().min(1),
        identifier: z.string().min(1),
        attestation_keys: z.array(Ed25519PublicJwkSchema).default([]),
        /** An organisation of insured persons (TI-M ePA): its users are in the isInsuredPerson group. */
        insured_persons: z.boolean().optional(),
      }),
    ),
  })
  .superRefine((list, ctx) => {
    // Two entries for one server would make "which organisation is this?" ambiguous.
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
export type TrustedOrganisation = TrustList["organisations"][number];

export const JWS_TYPE = "medmesh-trust-list+jws";
const CLOCK_SKEW_MS = 5 * 60_000;

export class TrustListError extends Error {
  override name = "TrustListError";
}

export interface VerifiedTrustList {
  payload: TrustList;
  /** The operator key that signed it. */
  kid: string;
}

const b64 = (data: Buffer | string): string => Buffer.from(data).toString("base64url");

/** A compact JWS (RFC 7515, EdDSA) over the list (validated first), signed by a network operator key. */
export function signTrustList(list: unknown, privateKey: KeyObject, kid: string): string {
  if (privateKey.asymmetricKeyType !== "ed25519" || privateKey.type !== "private") {
    throw new TrustListError("the operator key must be an Ed25519 private key");
  }
  // Refusing to sign an invalid list here beats every member refusing it later.
  const payload = parseList(list);
  const header = b64(JSON.stringify({ alg: "EdDSA", typ: JWS_TYPE, kid }));
  const body = b64(JSON.stringify(payload));
  const signature = sign(null, Buffer.from(`${header}.${body}`), privateKey);
  return `${header}.${body}.${b64(signature)}`;
}

/**
 * Checks, in this order, the JWS form, the header (EdDSA only, so never "none"), the signature,
 * the schema and the validity period; throws TrustListError naming what is wrong. Nothing of the
 * payload is looked at before the signature holds.
 */
export function verifyTrustList(
  jws: string,
  operatorKeys: readonly JsonWebKey[],
  now = new Date(),
): VerifiedTrustList {
  const parts = jws.trim().split(".");
  if (parts.length !== 3) throw new TrustListError("not a compact JWS (three dot-separated parts)");
  const [h = "", p = "", s = ""] = parts;
  const header = decodeJson(h, "header");
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new TrustListError("header is not a JSON object");
  }
  const { alg, typ, kid, crit } = header as Record<string, unknown>;
  if (alg !== "EdDSA") throw new TrustListError(`unsupported alg ${JSON.stringify(alg)} (EdDSA required)`);
  if (typ !== JWS_TYPE) throw new TrustListError(`wrong typ ${JSON.stringify(typ)} (${JWS_TYPE} required)`);
  // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
  if (crit !== undefined) throw new TrustListError("header has critical extensions (crit) we do not support");
  if (typeof kid !== "string" || kid === "") throw new TrustListError("the header names no key (kid)");
  const candidates = operatorKeys.filter((k) => (k as { kid?: unknown }).kid === kid);
  if (candidates.length === 0) throw new TrustListError(`signed with unknown key ${kid}`);
  const signature = decode(s, "signature");
  const input = Buffer.from(`${h}.${p}`);
  // Two configured keys may share a kid by mistake (e.g. mid-rotation); either may have signed.
  if (signature.length !== 64 || !candidates.some((k) => verify(null, input, publicKeyOf(k), signature))) {
    throw new TrustListError(`bad signature for key ${kid}`);
  }
  const list = parseList(decodeJson(p, "payload"));
  if (Date.parse(list.expires_at) <= now.getTime()) throw new TrustListError(`expired at ${list.expires_at}`);
  if (Date.parse(list.issued_at) > now.getTime() + CLOCK_SKEW_MS) {
    throw new TrustListError(`issued in the future (${list.issued_at})`);
  }
  return { payload: list, kid };
}

function parseList(value: unknown): TrustList {
  const parsed = TrustListSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const [first, ...more] = parsed.error.issues;
  const where = first?.path.join(".") || "(root)";
  const rest = more.length > 0 ? ` (and ${String(more.length)} more)` : "";
  throw new TrustListError(`invalid list at ${where}: ${first?.message ?? "?"}${rest}`);
}

function decode(part: string, what: string): Buffer {
  const bytes = Buffer.from(part, "base64url");
  // Node decodes leniently (skips junk, accepts padding); only the canonical form is one JWS.
  if (bytes.toString("base64url") !== part) throw new TrustListError(`${what} is not base64url`);
  return bytes;
}

function decodeJson(part: string, what: string): unknown {
  const bytes = decode(part, what);
  try {
    return JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new TrustListError(`${what} is not JSON`);
  }
}

function publicKeyOf(jwk: JsonWebKey): KeyObject {
  const parsed = Ed25519PublicJwkSchema.safeParse(jwk);
  if (!parsed.success) throw new TrustListError(`operator key ${String(jwk.kid)} is not an Ed25519 JWK`);
  const { kty, crv, x } = parsed.data;
  // Only the public members: a private JWK passed by mistake must not turn into a private key here.
  return createPublicKey({ key: { kty, crv, x }, format: "jwk" });
}

/** RFC 7638 thumbprint of an Ed25519 public key (SHA-256, base64url): a stable key id. */
export function thumbprint(jwk: JsonWebKey): string {
  // The required members, in lexicographic order, without whitespace.
  return createHash("sha256")
    .update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x }))
    .digest("base64url");
}

export interface GeneratedKey {
  privateJwk: JsonWebKey & { kid: string };
  publicJwk: Ed25519PublicJwk;
}

/** A new Ed25519 operator key; kid defaults to the key's RFC 7638 thumbprint. */
export function generateOperatorKey(kid?: string): GeneratedKey {
  const { privateKey } = generateKeyPairSync("ed25519");
  const priv = privateKey.export({ format: "jwk" });
  const id = kid ?? thumbprint(priv);
  if (id === "") throw new TrustListError("a key id (kid) must not be empty");
  return {
    privateJwk: { ...priv, kid: id },
    publicJwk: { kty: "OKP", crv: "Ed25519", x: String(priv.x), kid: id },
  };
}

/** Organisation attestation keys are the same kind of key; this name is older and used elsewhere. */
export const generateKey = generateOperatorKey;

/** The public half of an Ed25519 JWK (private or public), keeping its kid. */
export function publicJwkOf(jwk: JsonWebKey & { kid?: string }): JsonWebKey & { kid?: string } {
  const pub: JsonWebKey & { kid?: string } = { kty: "OKP", crv: "Ed25519" };
  if (jwk.x !== undefined) pub.x = jwk.x;
  if (jwk.kid !== undefined) pub.kid = jwk.kid;
  return pub;
}

export function loadPrivateKey(jwk: JsonWebKey): KeyObject {
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.d !== "string") {
    throw new TrustListError("not an Ed25519 private JWK (kty OKP, crv Ed25519, with d)");
  }
  try {
    return createPrivateKey({ key: jwk, format: "jwk" });
  } catch (err) {
    throw new TrustListError(`unusable Ed25519 private JWK: ${(err as Error).message}`);
  }
}

/** An organisation as the combined networks know it. */
export interface CombinedOrganisation {
  server_name: string;
  /** Name and identifier as the first list naming the server gives them. */
  name: string;
  identifier: string;
  /** Every network listing the server. */
  networks: string[];
  /** The union, by kid, of the attestation keys all those networks list for it. */
  attestation_keys: Ed25519PublicJwk[];
  /** Any network lists it as an organisation of insured persons (TI-M ePA). */
  insured_persons: boolean;
}

export interface CombinedTrust {
  isTrusted(serverName: string): boolean;
  organisation(serverName: string): CombinedOrganisation | undefined;
  /** Every trusted server, sorted. */
  servers(): string[];
  attestationKeys(serverName: string): Ed25519PublicJwk[];
  networksOf(serverName: string): string[];
}

/**
 * Several networks (a regional GP network, a hospital group) combined: the union of their members.
 * A server on two lists keeps the attestation keys of both (union by kid; on a kid clash the first
 * list's key wins, so a second network cannot swap out a key the first vouches for). Of two lists
 * of the same network only the highest sequence counts, so a member removed from the newer list is
 * not kept alive by a stale copy from another source.
 */
export function combineTrustLists(lists: readonly VerifiedTrustList[]): CombinedTrust {
  const newest = new Map<string, TrustList>();
  for (const { payload } of lists) {
    const seen = newest.get(payload.network);
    if (!seen || payload.sequence > seen.sequence) newest.set(payload.network, payload);
  }
  const byServer = new Map<string, { org: CombinedOrganisation; keys: Map<string, Ed25519PublicJwk> }>();
  for (const payload of newest.values()) {
    for (const org of payload.organisations) {
      let entry = byServer.get(org.server_name);
      if (!entry) {
        entry = {
          org: {
            server_name: org.server_name,
            name: org.name,
            identifier: org.identifier,
            networks: [],
            attestation_keys: [],
            insured_persons: false,
          },
          keys: new Map(),
        };
        byServer.set(org.server_name, entry);
      }
      for (const k of org.attestation_keys) if (!entry.keys.has(k.kid)) entry.keys.set(k.kid, k);
      entry.org.networks.push(payload.network);
      if (org.insured_persons === true) entry.org.insured_persons = true;
    }
  }
  const servers = [...byServer.keys()].sort();
  // Copies out, so callers cannot change what is trusted.
  const keysOf = (s: string): Ed25519PublicJwk[] =>
    [...(byServer.get(s)?.keys.values() ?? [])].map((k) => ({ ...k }));
  return {
    isTrusted: (s) => byServer.has(s),
    organisation: (s) => {
      const entry = byServer.get(s);
      return entry && { ...entry.org, networks: [...entry.org.networks], attestation_keys: keysOf(s) };
    },
    servers: () => [...servers],
    attestationKeys: keysOf,
    networksOf: (s) => [...(byServer.get(s)?.org.networks ?? [])],
  };
}
