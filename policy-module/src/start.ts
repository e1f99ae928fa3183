import { startAppserviceService, type RunningService, type StartOptions } from "@medmesh/common";
import type { PolicyModuleConfig } from "./config.ts";
import { startProxy } from "./proxy/index.ts";

/**
 * policy-module: the proxy role (when configured: the enforcement point every client and federation
 * request passes), the appservice role (store, transactions, health, metrics, the homeserver link)
 * and, later, the API role. Capabilities (identity, trust, retention, …) mount here.
 */
export async function start(config: PolicyModuleConfig, opts: StartOptions = {}): Promise<RunningService> {
  const proxy = config.proxy;
  return startAppserviceService(
    {
      name: "policy-module",
      onEvents: () => Promise.resolve(),
      roles: proxy
        ? [
            async ({ log, metrics }) => {
              const running = await startProxy(proxy, new URL(config.homeserver.url), { log, metrics });
              return {
                endpoints: { client: running.clientUrl, federation: running.federationUrl },
                stop: () => running.stop(),
              };
            },
          ]
        : [],
    },
    config,
    opts,
  );
}
