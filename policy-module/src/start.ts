import { readFileSync } from "node:fs";
import {
  leaderCallsRouteGroup,
  startAppserviceService,
  type RunningService,
  type ServiceDefinition,
  type StartOptions,
} from "@medmesh/common";
import type { PolicyModuleConfig } from "./config.ts";
import { mountDepartmentsApi, type Departments } from "./departments/index.ts";
import type { Groups } from "./groups/index.ts";
import { mountChannelsAdmin, type Channels } from "./channels/index.ts";
import type { Identity } from "./identity/service.ts";
import type { BotHost } from "./bot/index.ts";
import { replicaRoles } from "./replicas.ts";
import { startProxyRole } from "./proxy-role.ts";
import { mountOperatorRoutes } from "./operator-routes.ts";
import { createAuditService, mountAuditApi, type AuditService } from "./audit/index.ts";
import type { TimMirror } from "./rooms/tim-mirror.ts";
import { decisionRouteGroup, mountDecisionApi, type Decider } from "./decisions/index.ts";
import { POLICY_MODULE_MIGRATIONS } from "./migrations.ts";
import type { Retention } from "./retention/index.ts";
import { createTrustManager, loadOrgKey, missingTrustProblem, type TrustManager } from "./trust/index.ts";

type RoleContext = Parameters<NonNullable<ServiceDefinition["roles"]>[number]>[0];

export interface PolicyModuleStartOptions extends StartOptions {
  /** Called after the trust list changed Synapse's federation whitelist fragment (the runner restarts Synapse). */
  onSynapseWhitelistChanged?: () => Promise<void>;
}

/**
 * policy-module: the proxy role (when configured: the enforcement point every client and federation
 * request passes, with trust list, directory and invite permissions), the appservice role (store,
 * transactions, health, metrics, the homeserver link) and, later, the API role.
 */
export async function start(
  config: PolicyModuleConfig,
  opts: PolicyModuleStartOptions = {},
): Promise<RunningService> {
  // Checked before anything starts; the schema says the same to `validate-config`.
  const trustProblem = config.proxy ? missingTrustProblem(config.trust) : undefined;
  if (trustProblem) throw new Error(`policy-module refuses to start: ${trustProblem}`);
  let trust: TrustManager | undefined;
  let identity: Identity | undefined;
  let retention: Retention | undefined;
  let groups: Groups | undefined;
  let timMirror: TimMirror | undefined;
  let channels: Channels | undefined;
  let decider: Decider | undefined;
  let audit: AuditService | undefined;
  let departments: Departments | undefined;
  let bots: BotHost | undefined;
  let replicas: ReturnType<typeof replicaRoles> | undefined;
  // Synapse resends what queued while the service was down as soon as its ping succeeds, before the
  // roles run: those transactions wait for them instead of being acknowledged unhandled.
  const roleStarted = Promise.withResolvers<undefined>();
  if (!config.proxy) roleStarted.resolve(undefined);
  return startAppserviceService(
    {
      name: "policy-module",
      migrations: POLICY_MODULE_MIGRATIONS,
      // The bot's room events: joins on invite, verification badges, the retention index. The
      // transaction is acknowledged only after these ran (the index must not miss an event).
      onEvents: async (events) => {
        await roleStarted.promise;
        await retention?.onEvents(events);
        await identity?.onEvents(events);
        // The E2EE bots' inboxes, on whichever replica the transaction reached.
        await bots?.onEvents(events);
        await groups?.onEvents(events);
        await timMirror?.onEvents(events);
        await channels?.onEvents(events);
      },
      // The room-admin bot is in every room created through the proxy: it reads them for the
      // frame's catch-up on held-back transactions (retention must not miss an event).
      ...(config.proxy
        ? { readerFor: () => Promise.resolve(`@medmesh:${config.homeserver.server_name}`) }
        : {}),
      // Synapse's MedMesh module asks here with the decision token, not an admin's.
      routeGroups: [
        ...(config.synapse_module
          ? [decisionRouteGroup(readFileSync(config.synapse_module.token_file, "utf8").trim())]
          : []),
        // The other replicas, calling the one that leads a job (docs/replicas.md).
        leaderCallsRouteGroup(() => replicas?.botCalls),
      ],
      mount: (app, ctx) => {
        replicas = replicaRoles(config, ctx);
        replicas.botCalls.mount(app);
        if (config.synapse_module) {
          mountDecisionApi(app, { decider: () => decider, log: ctx.log, metrics: ctx.metrics });
        }
        audit = createAuditService(config.audit, {
          store: ctx.store,
          orgKey: config.organisation ? loadOrgKey(config.organisation.signing_key_file) : undefined,
          serverName: config.homeserver.server_name,
          log: ctx.log,
        });
        mountAuditApi(app, audit);
        mountChannelsAdmin(app, () => channels?.service);
        mountDepartmentsApi(app, { departments: () => departments, store: ctx.store });
        mountOperatorRoutes(app, {
          config,
          trust: () => trust,
          retention: () => retention,
          identity: () => identity,
        });
      },
      healthChecks: {
        trust_list: () =>
          Promise.resolve().then(() => {
            if (trust && trust.status().networks.length === 0)
              throw new Error("no valid trust list in force");
          }),
      },
      roles: [
        // Anchors the audit chain's head at start and then periodically, whatever other roles run.
        () => {
          audit?.start();
          return Promise.resolve({ endpoints: {}, stop: async () => audit?.stop() });
        },
        ...(config.proxy
          ? [
              async (ctx: RoleContext) => {
                trust =
                  config.trust && !config.trust.open_federation
                    ? await createTrustManager(config.trust, {
                        serverName: config.homeserver.server_name,
                        log: ctx.log,
                        metrics: ctx.metrics,
                        documents: ctx.store.documents,
                        ...(opts.onSynapseWhitelistChanged
                          ? { onWhitelistChanged: opts.onSynapseWhitelistChanged }
                          : {}),
                      })
                    : undefined;
                if (!trust)
                  ctx.log.warn("trust.open_federation: true: this organisation federates with any server");
                if (!replicas) throw new Error("proxy role started before the service's routes");
                return startProxyRole(
                  config,
                  ctx,
                  replicas,
                  trust,
                  () => audit,
                  (d) => (decider = d),
                  (i, r, g, c, dp, b, m) => {
                    bots = b;
                    identity = i;
                    retention = r;
                    groups = g;
                    channels = c;
                    departments = dp;
                    timMirror = m;
                    roleStarted.resolve(undefined);
                  },
                );
              },
            ]
          : []),
      ],
    },
    config,
    opts,
  );
}
