export { start } from "./start.ts";
export { BridgeConfigSchema, type BridgeConfig } from "./config.ts";
