import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RunningOrganisation } from "@medmesh/deploy";
import { parse as parseYaml, stringify as stringifyYaml } from "yaml";
import { freePorts } from "./ports.ts";
import { answers, serviceProcess } from "./service-process.ts";

export interface ReplicaProcess {
  name: string;
  process: ReturnType<typeof serviceProcess>;
  internalUrl: string;
  clientUrl: string;
}

/** The generated policy-module config, as far as the replica tests change it. */
export interface ReplicaConfig {
  listen: { port: number };
  proxy: { client: { port: number }; federation: { port: number } };
  identity: { bot?: boolean };
  retention: Record<string, unknown>;
  leader?: { lease_seconds: number };
}

/**
 * A policy-module replica as a process of its own (docs/replicas.md), from the organisation's
 * generated config with `lease_seconds`: the first keeps its ports (Synapse's appservice and module
 * URLs name them), a further one gets free ones; `tweak` changes the rest.
 */
export async function policyModuleReplica(
  org: RunningOrganisation,
  dataDir: string,
  name: string,
  opts: { ownPorts: boolean; leaseSeconds: number; tweak?: (config: ReplicaConfig) => void },
): Promise<ReplicaProcess> {
  const config = parseYaml(readFileSync(org.paths.policyModuleConfig, "utf8")) as ReplicaConfig;
  if (opts.ownPorts) {
    const [internal, client, federation] = await freePorts(3);
    config.listen.port = internal!;
    config.proxy.client.port = client!;
    config.proxy.federation.port = federation!;
  }
  config.leader = { lease_seconds: opts.leaseSeconds };
  opts.tweak?.(config);
  const clientUrl = `http://127.0.0.1:${String(config.proxy.client.port)}`;
  // /health answers before the roles run: the proxy is the last to listen.
  return replicaProcess("policy-module", name, dataDir, config, clientUrl, (internalUrl) =>
    answers(`${internalUrl}/health`).then((up) => up && answers(`${clientUrl}/_matrix/client/versions`)),
  );
}

/** A replica's config written beside the network's, and the process that runs it. */
function replicaProcess(
  service: "policy-module" | "bridge",
  name: string,
  dataDir: string,
  config: { listen: { port: number } },
  clientUrl: string,
  ready: (internalUrl: string) => Promise<boolean>,
): ReplicaProcess {
  const file = join(dataDir, `${service}-${name}.yaml`);
  writeFileSync(file, stringifyYaml(config), { mode: 0o600 });
  const internalUrl = `http://127.0.0.1:${String(config.listen.port)}`;
  return {
    name,
    internalUrl,
    clientUrl,
    process: serviceProcess({
      service,
      name: `${service}-${name}`,
      config: () => file,
      dataDir: () => dataDir,
      ready: () => ready(internalUrl),
      readyTimeoutMs: 90_000,
    }),
  };
}

/** The generated bridge config, as far as the replica tests change it. */
interface BridgeReplicaConfig {
  listen: { port: number };
  interop: { listen: { port: number } };
  leader?: { lease_seconds: number };
}

/**
 * A bridge replica as a process of its own, from the organisation's generated config with
 * `lease_seconds`: the first keeps its ports (Synapse's appservice URL and the vendors' interop URL
 * name them), a further one gets free ones. `clientUrl` is its interop listener.
 */
export async function bridgeReplica(
  org: RunningOrganisation,
  dataDir: string,
  name: string,
  opts: { ownPorts: boolean; leaseSeconds: number },
): Promise<ReplicaProcess> {
  const config = parseYaml(readFileSync(org.paths.bridgeConfig, "utf8")) as BridgeReplicaConfig;
  if (opts.ownPorts) {
    const [internal, interop] = await freePorts(2);
    config.listen.port = internal!;
    config.interop.listen.port = interop!;
  }
  config.leader = { lease_seconds: opts.leaseSeconds };
  const clientUrl = `http://127.0.0.1:${String(config.interop.listen.port)}`;
  return replicaProcess("bridge", name, dataDir, config, clientUrl, (internalUrl) =>
    answers(`${internalUrl}/health`),
  );
}

/** medmesh_leader{job} of a replica: true on the leader, false on a standby, undefined unreachable. */
export async function leads(
  org: RunningOrganisation,
  r: ReplicaProcess,
  job: string,
  service: "policy-module" | "bridge" = "policy-module",
): Promise<boolean | undefined> {
  const token = readFileSync(org.adminTokenFiles[service], "utf8").trim();
  const res = await fetch(`${r.internalUrl}/metrics`, {
    headers: { authorization: `Bearer ${token}` },
  }).catch(() => undefined);
  if (!res?.ok) return undefined;
  const line = (await res.text())
    .split("\n")
    .find((l) => l.startsWith("medmesh_leader{") && l.includes(`job="${job}"`));
  return line === undefined ? undefined : line.endsWith(" 1");
}
