import { createPublicKey, sign, verify, type JsonWebKey, type KeyObject } from "node:crypto";
import type { OrgKey } from "../trust/request-signing.ts";

export const REVOCATION_TYPE = "medmesh-revocation+jws";
export const REVOCATIONS_PATH = "/_medmesh/identity/v1/revocations";

/**
 * An organisation's statement that one of its clinicians is no longer verified, pushed to its
 * peers. Signed with the same organisation key as attestations (the trust list holds its public
 * half), so it can be checked by anyone who holds the list and forwarded without losing its proof.
 */
export interface RevocationNotice {
  iss: string;
  sub: string;
  status: "revoked";
  /** Unix seconds: every attestation of `sub` issued up to then is void. */
  revoked_at: number;
  /** The notice's ID: a receiver applies each once. */
  jti: string;
  iat: number;
}

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString("base64url");

export function signRevocation(key: OrgKey, n: RevocationNotice): string {
  const input = `${b64({ alg: "EdDSA", typ: REVOCATION_TYPE, kid: key.kid })}.${b64(n)}`;
  return `${input}.${sign(null, Buffer.from(input), key.privateKey).toString("base64url")}`;
}

export class RevocationError extends Error {
  override name = "RevocationError";
}

/**
 * Checks a notice against the keys the trust list holds for the organisation that sent it: the
 * signature, the type, the issuer is the sender, the user is the issuer's own. Throws
 * RevocationError naming what is wrong.
 */
export function verifyRevocation(jws: string, issuer: string, keys: readonly JsonWebKey[]): RevocationNotice {
  const [h = "", p = "", s = ""] = jws.split(".");
  let header: { alg?: unknown; typ?: unknown; kid?: unknown };
  let payload: Partial<RevocationNotice>;
  try {
    header = JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as typeof header;
    payload = JSON.parse(Buffer.from(p, "base64url").toString("utf8")) as Partial<RevocationNotice>;
  } catch {
    throw new RevocationError("not a JWS");
  }
  if (header.alg !== "EdDSA" || header.typ !== REVOCATION_TYPE)
    throw new RevocationError("not a MedMesh revocation notice");
  const jwk = keys.find((k) => (k as { kid?: unknown }).kid === header.kid);
  if (!jwk) throw new RevocationError(`signed with a key the trust list does not hold for ${issuer}`);
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: jwk, format: "jwk" });
  } catch {
    throw new RevocationError("the issuer's listed key is not usable");
  }
  const sig = Buffer.from(s, "base64url");
  if (sig.length !== 64 || !verify(null, Buffer.from(`${h}.${p}`), publicKey, sig))
    throw new RevocationError("bad signature");
  if (payload.iss !== issuer) throw new RevocationError(`issued by ${String(payload.iss)}, not ${issuer}`);
  if (typeof payload.sub !== "string" || !/^@[^:]+:.+$/.test(payload.sub))
    throw new RevocationError("sub is not a Matrix user ID");
  if (payload.sub.slice(payload.sub.indexOf(":") + 1) !== issuer)
    throw new RevocationError("an organisation may only revoke its own users");
  if (payload.status !== "revoked") throw new RevocationError("status must be revoked");
  if (
    typeof payload.jti !== "string" ||
    !/^[A-Za-z0-9_-]{8,128}$/.test(payload.jti) ||
    typeof payload.revoked_at !== "number" ||
    typeof payload.iat !== "number"
  )
    throw new RevocationError("incomplete revocation notice");
  return payload as RevocationNotice;
}
