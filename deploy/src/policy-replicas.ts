import { join } from "node:path";
import { createLogger, type RunningService } from "@medmesh/common";
import { start as startPolicyModule } from "@medmesh/policy-module";
import { freePort, startBalancer, type Backend, type RunningBalancer } from "./balancer.ts";
import type { GeneratedOrganisation } from "./generate.ts";

type PolicyModuleConfig = GeneratedOrganisation["policyModule"];

export interface PolicyModuleReplicas {
  /** The first replica (the one that restarts Synapse on a trust-list change), then the others. */
  first: RunningService;
  further: RunningService[];
  /** With more than one replica: the balancers on the configured ports, one per listener. */
  balancers: RunningBalancer[];
  stop(): Promise<void>;
}

/**
 * The organisation's policy module: one process on its configured ports, or — with
 * `policy_module_replicas: N` (docs/replicas.md) — N replicas on ports of their own behind a
 * balancer on each configured port (the internal API that Synapse's module and appservice
 * transactions reach, the client proxy, the federation proxy), so that every caller has one
 * address and a stopped replica's share goes to the others.
 */
export async function startPolicyModules(
  g: GeneratedOrganisation,
  logDir: string,
  onSynapseWhitelistChanged: () => Promise<void>,
): Promise<PolicyModuleReplicas> {
  const n = g.org.policy_module_replicas;
  const started: RunningService[] = [];
  const balancers: RunningBalancer[] = [];
  const stop = async (): Promise<void> => {
    await Promise.allSettled(balancers.map((b) => b.stop()));
    await Promise.allSettled(started.map((s) => s.stop()));
  };
  try {
    const c = g.policyModule;
    // With replicas, each gets ports of its own, chosen first: the balancers must know them before
    // the first replica starts (its start-up pings itself through Synapse, i.e. through them).
    const configs: PolicyModuleConfig[] = [];
    for (let i = 1; i <= n; i++) configs.push(n > 1 ? await ownPorts(c) : c);
    if (n > 1) {
      const log = createLogger("balancer", c.log_level, join(logDir, "balancer.log"));
      type Listener = (r: PolicyModuleConfig) => Backend | undefined;
      const listeners: Listener[] = [(r) => r.listen, (r) => r.proxy?.client, (r) => r.proxy?.federation];
      for (const of of listeners) {
        const front = of(c);
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
    for (const [i, config] of configs.entries()) {
      // Only the first restarts Synapse on a trust-list change; every one may lead the E2EE bots
      // (docs/replicas.md).
      const name = i === 0 ? "policy-module" : `policy-module-${String(i + 1)}`;
      started.push(
        await startPolicyModule(config, {
          log: createLogger(name, c.log_level, join(logDir, `${name}.log`)),
          // Synapse reads its federation whitelist only at start-up: a changed trust list restarts it.
          ...(i === 0 ? { onSynapseWhitelistChanged } : {}),
        }),
      );
    }
  } catch (err) {
    await stop();
    throw err;
  }
  const [first, ...further] = started as [RunningService, ...RunningService[]];
  return { first, further, balancers, stop };
}

/** The config on free ports of its own (the balancers hold the configured ones). */
async function ownPorts(c: PolicyModuleConfig): Promise<PolicyModuleConfig> {
  return {
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
  };
}

function pick(b: Backend | undefined): Backend {
  if (!b) throw new Error("a policy-module replica's config lacks a listener its balancer fronts");
  return { host: b.host, port: b.port };
}
