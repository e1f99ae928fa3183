import { hostname } from "node:os";
import {
  createLeadership,
  startAppserviceService,
  type Leadership,
  type RunningService,
  type StartOptions,
} from "@medmesh/common";
import type { BridgeConfig } from "./config.ts";
import { createBridgeCore, type BridgeCore } from "./core/index.ts";
import { BRIDGE_MIGRATIONS } from "./store/index.ts";

/**
 * bridge: interop with other medical messengers. The appservice frame (store, health, metrics,
 * the homeserver link, the dead-letter admin API on the internal listener) and, when `interop` is
 * configured, the bridge core with the open interop API vendors call, on a listener of its own
 * that serves nothing else (docs/bridge.md). Replicas on one PostgreSQL store elect a leader per
 * vendor (docs/replicas.md).
 */
export async function start(config: BridgeConfig, opts: StartOptions = {}): Promise<RunningService> {
  let core: BridgeCore | undefined;
  let leadership: Leadership | undefined;
  return startAppserviceService(
    {
      name: "bridge",
      migrations: BRIDGE_MIGRATIONS,
      onEvents: (events, transaction) => core?.onEvents(events, transaction) ?? Promise.resolve(),
      readerFor: (roomId) => core?.readerFor(roomId) ?? Promise.resolve(undefined),
      mount: (app, ctx) => {
        if (!config.interop) return;
        // A restart in its own place (same host and internal port) takes its leases back at once.
        leadership = createLeadership({
          leases: ctx.store.leases,
          knex: ctx.store.knex,
          config: config.leader,
          log: ctx.log,
          metrics: ctx.metrics,
          ...(config.listen.port ? { holder: `${hostname()}:${String(config.listen.port)}` } : {}),
        });
        const jobs = leadership;
        core = createBridgeCore(app, {
          config: config.interop,
          homeserver: config.homeserver,
          registration: ctx.registration,
          knex: ctx.store.knex,
          leases: ctx.store.leases,
          notifications: ctx.store.notifications,
          leader: (job) => jobs.job(job),
          log: ctx.log,
          metrics: ctx.metrics,
        });
      },
      listeners: config.interop
        ? [
            {
              name: "interop",
              listen: config.interop.listen,
              routeGroups: [
                {
                  prefix: "/_medmesh/interop/",
                  authenticate: "in-handlers",
                  description: "vendors, with RFC 9421 signatures over each request (interop/server.ts)",
                },
              ],
              mount: (app) => {
                core?.mountInterop(app);
              },
            },
          ]
        : [],
      roles: [
        async () => {
          await core?.start();
          await leadership?.start();
          return {
            endpoints: {},
            stop: async () => {
              await core?.stop();
              await leadership?.stop(); // a clean stop hands the vendors over at once
            },
          };
        },
      ],
    },
    config,
    opts,
  );
}
