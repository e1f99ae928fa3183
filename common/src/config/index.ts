export { ConfigError, loadConfigFile, parseConfig, resolveSecretRefs } from "./load.ts";
export { renderSample } from "./sample.ts";
export {
  AdminConfigSchema,
  type AdminConfig,
  ServiceConfigSchema,
  ServerNameSchema,
  listenerSchema,
  type ServiceConfig,
} from "./service.ts";
