import { startAppserviceService, type RunningService, type StartOptions } from "@medmesh/common";
import type { BridgeConfig } from "./config.ts";
import { createBridgeCore, type BridgeCore } from "./core/index.ts";

/**
 * bridge: interop with other medical messengers. The appservice frame (store, health, metrics,
 * the homeserver link) and, when `interop` is configured, the bridge core with the open interop
 * API vendors call (docs/bridge.md).
 */
export async function start(config: BridgeConfig, opts: StartOptions = {}): Promise<RunningService> {
  let core: BridgeCore | undefined;
  return startAppserviceService(
    {
      name: "bridge",
      onEvents: (events, transaction) => core?.onEvents(events, transaction) ?? Promise.resolve(),
      mount: (app, ctx) => {
        if (config.interop)
          core = createBridgeCore(app, {
            config: config.interop,
            homeserver: config.homeserver,
            registration: ctx.registration,
            knex: ctx.store.knex,
            log: ctx.log,
            metrics: ctx.metrics,
          });
      },
      roles: [
        async () => {
          await core?.start();
          return { endpoints: {}, stop: async () => core?.stop() };
        },
      ],
    },
    config,
    opts,
  );
}
