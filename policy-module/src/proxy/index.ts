export { ProxyConfigSchema, type ProxyConfig } from "./config.ts";
export { startProxy, type RunningProxy } from "./server.ts";
