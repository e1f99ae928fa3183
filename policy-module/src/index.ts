export { start } from "./start.ts";
export { POLICY_MODULE_MIGRATIONS } from "./migrations.ts";
export { IdentityConfigSchema } from "./identity/verification.ts";
export { configuredPlugins, pluginFor, REGISTRY_PLUGINS } from "./identity/registries/index.ts";
export { RetentionConfigSchema, type RetentionConfig } from "./retention/index.ts";
export { PolicyModuleConfigSchema, type PolicyModuleConfig } from "./config.ts";
export { LimitsOverrideSchema, WORKER_ROUTES, WORKER_STREAMS, type WorkerRoute } from "./proxy/index.ts";
export { type PolicyModuleStartOptions } from "./start.ts";
export {
  generateKey,
  loadPrivateKey,
  publicJwkOf,
  runTrustCli,
  signTrustList,
  synapseWhitelistYaml,
  verifyTrustList,
  type TrustListInput,
} from "./trust/index.ts";
export { loadOrgKey, signRequest } from "./trust/index.ts";
export { runAuditCli, AuditConfigSchema, type AuditConfig } from "./audit/index.ts";
export { runProxyCli, UNKNOWN_ENDPOINT_LOG } from "./proxy/index.ts";
export { runAdminCli } from "./console/index.ts";
