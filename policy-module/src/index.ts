export { start } from "./start.ts";
export { PolicyModuleConfigSchema, type PolicyModuleConfig } from "./config.ts";
