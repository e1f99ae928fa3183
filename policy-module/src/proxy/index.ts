export { LimitsOverrideSchema, ProxyConfigSchema, type ProxyConfig } from "./config.ts";
export { startProxy, type ProxyDeps, type RunningProxy } from "./server.ts";
export { Refusal, forbidden, type OwnResponse, type ProxyContext } from "./context.ts";
export { parseXMatrix, type XMatrixAuth } from "./federation-rules.ts";
export * from "./policy.ts";
export { route, type Route } from "./router.ts";
export { compileEndpoints, ENDPOINTS, UNKNOWN_ENDPOINT_LOG, type EndpointEntry } from "./endpoints.ts";
export { runProxyCli } from "./endpoints-cli.ts";
export { WORKER_ROUTES, WORKER_STREAMS, type WorkerRoute, type WorkerStream } from "./worker-routes.ts";
