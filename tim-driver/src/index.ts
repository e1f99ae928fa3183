export { startTimDriver, type RunningTimDriver } from "./start.ts";
export { TimDriverConfigSchema, type TimDriverConfig } from "./config.ts";
export { UNIMPLEMENTED } from "./unimplemented.ts";
export { TEST_DRIVER_API_VERSION } from "./app.ts";
export { TIM_DRIVER_OPENAPI, loadTimDriverOpenApi } from "./openapi.ts";
