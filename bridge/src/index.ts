export { start } from "./start.ts";
export { BRIDGE_MIGRATIONS } from "./store/index.ts";
export { BridgeConfigSchema, type BridgeConfig } from "./config.ts";
export { InteropVendorSchema } from "./interop/config.ts";
export { InteropConfigSchema } from "./interop/config.ts";
export { startReferenceVendor } from "./vendor/index.ts";
