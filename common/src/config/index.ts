export { ConfigError, loadConfigFile, parseConfig, resolveSecretRefs } from "./load.ts";
export { renderSample } from "./sample.ts";
export { ServiceConfigSchema, type ServiceConfig } from "./service.ts";
