export { TrustConfigSchema, type TrustConfig } from "./config.ts";
export { runTrustCli } from "./cli.ts";
export {
  createTrustManager,
  synapseWhitelistYaml,
  type TrustManager,
  type TrustStatus,
} from "./trust-manager.ts";
export { loadOrgKey, signRequest, verifyRequest, canonicalJson, type OrgKey } from "./request-signing.ts";
export {
  combineTrustLists,
  generateKey,
  loadPrivateKey,
  publicJwkOf,
  signTrustList,
  thumbprint,
  TrustListError,
  TrustListSchema,
  verifyTrustList,
  type TrustList,
  type TrustListInput,
  type VerifiedTrustList,
} from "./trust-list.ts";
