export { missingTrustProblem, TrustConfigSchema, type TrustConfig } from "./config.ts";
export { runTrustCli, type CliIo } from "./cli.ts";
export {
  createTrustManager,
  synapseWhitelistYaml,
  type TrustManager,
  type TrustStatus,
} from "./trust-manager.ts";
export { loadOrgKey, signRequest, verifyRequest, canonicalJson, type OrgKey } from "./request-signing.ts";
export {
  combineTrustLists,
  Ed25519PublicJwkSchema,
  generateKey,
  generateOperatorKey,
  JWS_TYPE,
  loadPrivateKey,
  publicJwkOf,
  signTrustList,
  thumbprint,
  TrustListError,
  TrustListSchema,
  verifyTrustList,
  type CombinedOrganisation,
  type CombinedTrust,
  type Ed25519PublicJwk,
  type GeneratedKey,
  type TrustedOrganisation,
  type TrustList,
  type TrustListInput,
  type VerifiedTrustList,
} from "./trust-list.ts";
