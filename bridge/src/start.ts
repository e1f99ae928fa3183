import { startAppserviceService, type RunningService, type StartOptions } from "@medmesh/common";
import type { BridgeConfig } from "./config.ts";
import { mountInteropApi } from "./interop/index.ts";

/**
 * bridge: interop with other medical messengers. The appservice core (store, health, metrics, the
 * homeserver link) and, when configured, the open interop API vendors call.
 */
export async function start(config: BridgeConfig, opts: StartOptions = {}): Promise<RunningService> {
  return startAppserviceService(
    {
      name: "bridge",
      onEvents: () => Promise.resolve(),
      mount: (app, ctx) => {
        if (config.interop)
          mountInteropApi(app, {
            config: config.interop,
            knex: ctx.store.knex,
            log: ctx.log,
            metrics: ctx.metrics,
          });
      },
    },
    config,
    opts,
  );
}
