import {
  createPrivateKey,
  createPublicKey,
  sign,
  verify,
  type KeyObject,
  type JsonWebKey,
} from "node:crypto";
import { readFileSync } from "node:fs";
import { canonicalJson } from "@medmesh/common";

export { canonicalJson };

export interface OrgKey {
  kid: string;
  privateKey: KeyObject;
}

/** The organisation's Ed25519 key (a private JWK with a kid), which signs its peer requests and attestations. */
export function loadOrgKey(file: string): OrgKey {
  const jwk = JSON.parse(readFileSync(file, "utf8")) as JsonWebKey & { kid?: string };
  if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || !jwk.d || !jwk.kid) {
    throw new Error(`${file}: not an Ed25519 private JWK with a kid`);
  }
  return { kid: jwk.kid, privateKey: createPrivateKey({ key: jwk, format: "jwk" }) };
}

interface SignedRequest {
  method: string;
  uri: string;
  origin: string;
  destination: string;
  content?: unknown;
}

/**
 * Requests between organisations' MedMesh services are signed like Matrix federation requests
 * (an X-Matrix Authorization header over canonical JSON of method, URI, origin, destination and
 * content), but with the organisation key that the signed trust list publishes, so a peer checks
 * them against the list without fetching keys from anyone.
 */
export function signRequest(key: OrgKey, req: SignedRequest): string {
  const sig = sign(null, Buffer.from(canonicalJson(req)), key.privateKey).toString("base64url");
  return `X-Matrix origin="${req.origin}",destination="${req.destination}",key="ed25519:${key.kid}",sig="${sig}"`;
}

export function verifyRequest(
  req: SignedRequest,
  auth: { key: string; sig: string },
  keys: readonly JsonWebKey[],
): boolean {
  const kid = auth.key.replace(/^ed25519:/, "");
  const jwk = keys.find((k) => (k as { kid?: string }).kid === kid);
  if (!jwk) return false;
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey({ key: jwk, format: "jwk" });
  } catch {
    return false;
  }
  const signature = Buffer.from(auth.sig, "base64url");
  return signature.length === 64 && verify(null, Buffer.from(canonicalJson(req)), publicKey, signature);
}
