import { startAppserviceService, type RunningService, type StartOptions } from "@medmesh/common";
import type { PolicyModuleConfig } from "./config.ts";

/**
 * policy-module: proxy, appservice and api roles. The foundation starts the appservice role: store, health,
 * metrics and the homeserver link. Capabilities (identity, trust, retention, …) mount here.
 */
export async function start(config: PolicyModuleConfig, opts: StartOptions = {}): Promise<RunningService> {
  return startAppserviceService({ name: "policy-module", onEvents: () => Promise.resolve() }, config, opts);
}
