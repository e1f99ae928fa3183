import { join } from "node:path";
import { createLogger, type RunningService } from "@medmesh/common";
import { start as startBridge, type BridgeConfig } from "@medmesh/bridge";
import { start as startPolicyModule } from "@medmesh/policy-module";
import { freePort, startBalancer, type Backend, type RunningBalancer } from "./balancer.ts";
import type { GeneratedOrganisation } from "./generate.ts";

type PolicyModuleConfig = GeneratedOrganisation["policyModule"];

export interface ServiceReplicas {
  /** The first replica (the policy module's restarts Synapse on a trust-list change), then the others. */
  first: RunningService;
  further: RunningService[];
  /** With more than one replica: the balancers on the configured ports, one per listener. */
  balancers: RunningBalancer[];
  stop(): Promise<void>;
}

/**
 * One service of an organisation: one process on its configured ports, or — with N replicas
 * (docs/replicas.md) — N on ports of their own behind a balancer on each configured port, so that
 * every caller keeps one address and a stopped replica's share goes to the others.
 */
async function startReplicas<C extends { log_level: Parameters<typeof createLogger>[1] }>(o: {
  name: "policy-module" | "bridge";
  n: number;
  config: C;
  logDir: string;
  /** The listeners a balancer fronts (undefined: not configured). */
  listeners: ((c: C) => Backend | undefined)[];
  /** The config on free ports of its own (the balancers hold the configured ones). */
  ownPorts: (c: C) => Promise<C>;
  start: (c: C, name: string, i: number) => Promise<RunningService>;
}): Promise<ServiceReplicas> {
  const started: RunningService[] = [];
  const balancers: RunningBalancer[] = [];
  const stop = async (): Promise<void> => {
    await Promise.allSettled(balancers.map((b) => b.stop()));
    await Promise.allSettled(started.map((s) => s.stop()));
  };
  try {
    // With replicas, each gets ports of its own, chosen first: the balancers must know them before
    // the first replica starts (its start-up pings itself through Synapse, i.e. through them).
    const configs: C[] = [];
    for (let i = 1; i <= o.n; i++) configs.push(o.n > 1 ? await o.ownPorts(o.config) : o.config);
    if (o.n > 1) {
      const log = createLogger(
        `${o.name}-balancer`,
        o.config.log_level,
        join(o.logDir, `${o.name}-balancer.log`),
      );
      for (const of of o.listeners) {
        const front = of(o.config);
        if (front)
          balancers.push(
            await startBalancer(
              pick(front),
              configs.map((r) => pick(of(r))),
              log,
            ),
          );
      }
    }
    for (const [i, config] of configs.entries())
      started.push(await o.start(config, i === 0 ? o.name : `${o.name}-${String(i + 1)}`, i));
  } catch (err) {
    await stop();
    throw err;
  }
  const [first, ...further] = started as [RunningService, ...RunningService[]];
  return { first, further, balancers, stop };
}

/**
 * The organisation's policy module, `policy_module_replicas` of it: balancers on the internal API
 * (Synapse's module decisions and appservice transactions), the client proxy and the federation proxy.
 */
export function startPolicyModules(
  g: GeneratedOrganisation,
  logDir: string,
  onSynapseWhitelistChanged: () => Promise<void>,
): Promise<ServiceReplicas> {
  return startReplicas<PolicyModuleConfig>({
    name: "policy-module",
    n: g.org.policy_module_replicas,
    config: g.policyModule,
    logDir,
    listeners: [(r) => r.listen, (r) => r.proxy?.client, (r) => r.proxy?.federation],
    ownPorts: async (c) => ({
      ...c,
      listen: { ...c.listen, port: await freePort(c.listen.host) },
      ...(c.proxy
        ? {
            proxy: {
              ...c.proxy,
              client: { ...c.proxy.client, port: await freePort(c.proxy.client.host) },
              federation: { ...c.proxy.federation, port: await freePort(c.proxy.federation.host) },
            },
          }
        : {}),
    }),
    // Only the first restarts Synapse on a trust-list change (Synapse reads its federation
    // whitelist only at start-up); every one may lead the E2EE bots (docs/replicas.md).
    start: (config, name, i) =>
      startPolicyModule(config, {
        log: createLogger(name, config.log_level, join(logDir, `${name}.log`)),
        ...(i === 0 ? { onSynapseWhitelistChanged } : {}),
      }),
  });
}

/**
 * The organisation's bridge, `bridge_replicas` of it: balancers on the internal listener
 * (appservice transactions, the admin API) and the interop listener the vendors call. Each vendor's
 * queues and ghosts' devices run on the leader of its lease (docs/replicas.md, "The bridge").
 */
export function startBridges(g: GeneratedOrganisation, logDir: string): Promise<ServiceReplicas> {
  return startReplicas<BridgeConfig>({
    name: "bridge",
    n: g.org.bridge_replicas,
    config: g.bridge,
    logDir,
    listeners: [(r) => r.listen, (r) => r.interop?.listen],
    ownPorts: async (c) => ({
      ...c,
      listen: { ...c.listen, port: await freePort(c.listen.host) },
      ...(c.interop
        ? {
            interop: {
              ...c.interop,
              listen: { ...c.interop.listen, port: await freePort(c.interop.listen.host) },
            },
          }
        : {}),
    }),
    start: (config, name) =>
      startBridge(config, { log: createLogger(name, config.log_level, join(logDir, `${name}.log`)) }),
  });
}

function pick(b: Backend | undefined): Backend {
  if (!b) throw new Error("a replica's config lacks a listener its balancer fronts");
  return { host: b.host, port: b.port };
}
