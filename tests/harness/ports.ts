import { readFileSync } from "node:fs";
import { createServer } from "node:net";

/**
 * Distinct free TCP ports on 127.0.0.1. The OS hands them out and we release them at once, so a
 * port can in theory be taken before Synapse binds it; on a test machine that is rare enough, and
 * the start-up error then names the port.
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => {
      const server = createServer();
      return new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => {
          resolve(server);
        });
      });
    }),
  );
  const ports = servers.map((s) => {
    const addr = s.address();
    if (addr === null || typeof addr === "string") throw new Error("unexpected server address");
    return addr.port;
  });
  await Promise.all(
    servers.map(
      (s) =>
        new Promise<void>((r) => {
          s.close(() => {
            r();
          });
        }),
    ),
  );
  return ports;
}

export interface OrganisationPorts {
  client: number;
  federation: number;
  synapse_client: number;
  synapse_federation: number;
  policy_module: number;
  bridge: number;
  bridge_interop: number;
}

/** The seven ports one organisation needs (see `ports` in the deployment config), all free. */
export async function freeOrganisationPorts(): Promise<OrganisationPorts> {
  const [client, federation, synapseClient, synapseFederation, policyModule, bridge, bridgeInterop] =
    (await freePorts(7)) as [number, number, number, number, number, number, number];
  return {
    client,
    federation,
    synapse_client: synapseClient,
    synapse_federation: synapseFederation,
    policy_module: policyModule,
    bridge,
    bridge_interop: bridgeInterop,
  };
}

/**
 * `count` consecutive free ports (a worker topology's listeners), found by probing, below the
 * kernel's ephemeral range: a port in that range can be taken by any outgoing connection between
 * the probe and Synapse's bind, which a busy test machine makes often enough to matter.
 */
export async function freeConsecutivePorts(count: number): Promise<number> {
  const low = ephemeralLow() - count;
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * Math.max(1, low - 20_000));
    const free = await Promise.all(Array.from({ length: count }, (_, i) => isFree(base + i)));
    if (free.every(Boolean)) return base;
  }
  throw new Error(`found no ${String(count)} consecutive free ports`);
}

function ephemeralLow(): number {
  try {
    return (
      Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || 32_768
    );
  } catch {
    return 32_768;
  }
}

function isFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => {
      resolve(false);
    });
    probe.listen(port, "127.0.0.1", () => {
      probe.close(() => {
        resolve(true);
      });
    });
  });
}

/** The ports of a worker topology (workers.ports in the deployment config), all free. */
export async function freeWorkerPorts(
  workers: number,
): Promise<{ replication: number; redis: number; first_worker: number }> {
  const base = await freeConsecutivePorts(workers + 2);
  return { replication: base, redis: base + 1, first_worker: base + 2 };
}
