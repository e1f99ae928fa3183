import { createPublicKey, sign, verify, type JsonWebKey, type KeyObject } from "node:crypto";
import type { OrgKey } from "../trust/request-signing.ts";

export const ATTESTATION_TYPE = "medmesh-attestation+jws";

/** What an organisation states about one of its clinicians. No registration number. */
export interface Attestation {
  iss: string;
  sub: string;
  profession: string;
  registry: string;
  verified_at: string;
  /** Unix seconds: the attestation is worthless afterwards. */
  exp: number;
  iat: number;
  /**
   * Present when the organisation's own identity provider proved who the clinician is (the
   * account came from its single sign-on): the organisation's name. Absent for self-registered
   * accounts. Added later: verifiers that do not know it ignore it, as JWS payloads allow.
   */
  identity_proven_by?: string;
}

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString("base64url");

export function signAttestation(key: OrgKey, a: Attestation): string {
  const input = `${b64({ alg: "EdDSA", typ: ATTESTATION_TYPE, kid: key.kid })}.${b64(a)}`;
  return `${input}.${sign(null, Buffer.from(input), key.privateKey).toString("base64url")}`;
}

export class AttestationError extends Error {
  override name = "AttestationError";
}

/**
 * Checks an attestation with the keys the trust list holds for its issuer: signature, type, the
 * issuer's own user, expiry. Throws AttestationError naming what is wrong.
 */
export function verifyAttestation(
  jws: string,
  expected: { issuer: string; subject?: string },
  keys: readonly JsonWebKey[],
  now = new Date(),
): Attestation {
  const [h = "", p = "", s = ""] = jws.split(".");
  let header: { alg?: unknown; typ?: unknown; kid?: unknown };
  let payload: Partial<Attestation>;
  try {
    header = JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as typeof header;
    payload = JSON.parse(Buffer.from(p, "base64url").toString("utf8")) as Partial<Attestation>;
  } catch {
    throw new AttestationError("not a JWS");
  }
  if (header.alg !== "EdDSA" || header.typ !== ATTESTATION_TYPE)
    throw new AttestationError("not a MedMesh attestation");
  const jwk = keys.find((k) => (k as { kid?: unknown }).kid === header.kid);
  if (!jwk)
    throw new AttestationError(`signed with a key the trust list does not hold for ${expected.issuer}`);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: jwk, format: "jwk" });
  } catch {
    throw new AttestationError("the issuer's listed key is not usable");
  }
  const sig = Buffer.from(s, "base64url");
  if (sig.length !== 64 || !verify(null, Buffer.from(`${h}.${p}`), publicKey, sig)) {
    throw new AttestationError("bad signature");
  }
  if (payload.iss !== expected.issuer)
    throw new AttestationError(`issued by ${String(payload.iss)}, not ${expected.issuer}`);
  if (typeof payload.sub !== "string" || !payload.sub.endsWith(`:${expected.issuer}`)) {
    throw new AttestationError("an organisation may only attest its own users");
  }
  if (expected.subject !== undefined && payload.sub !== expected.subject)
    throw new AttestationError(`about ${payload.sub}, not ${expected.subject}`);
  if (typeof payload.exp !== "number" || payload.exp * 1000 <= now.getTime())
    throw new AttestationError("expired");
  if (
    typeof payload.profession !== "string" ||
    typeof payload.registry !== "string" ||
    typeof payload.verified_at !== "string" ||
    typeof payload.iat !== "number" ||
    (payload.identity_proven_by !== undefined && typeof payload.identity_proven_by !== "string")
  ) {
    throw new AttestationError("incomplete attestation");
  }
  return payload as Attestation;
}
