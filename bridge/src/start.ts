import { startAppserviceService, type RunningService, type StartOptions } from "@medmesh/common";
import type { BridgeConfig } from "./config.ts";

/**
 * bridge: interop with other medical messengers. The foundation starts the appservice core: store,
 * health, metrics and the homeserver link; network adapters mount here.
 */
export async function start(config: BridgeConfig, opts: StartOptions = {}): Promise<RunningService> {
  return startAppserviceService({ name: "bridge", onEvents: () => Promise.resolve() }, config, opts);
}
