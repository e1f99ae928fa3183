import { createServer, connect, type Server, type Socket } from "node:net";
import type { Logger } from "pino";

/** One address in front of several replicas' listeners (host and port of each). */
export interface Backend {
  host: string;
  port: number;
}

export interface RunningBalancer {
  readonly address: Backend;
  /** Connections passed on, per backend (`host:port`), since the start. */
  readonly connections: ReadonlyMap<string, number>;
  stop(): Promise<void>;
}

/**
 * The local runner's load balancer in front of a service's replicas (the policy module's, the
 * bridge's; docs/replicas.md): a TCP pass-through that hands each new connection to the next replica in turn, and to the one after
 * it when that one does not accept (a stopped or killed replica). TLS and HTTP keep-alive pass
 * through unchanged; a connection stays with its replica until either side closes it. Production
 * puts the organisation's own load balancer here.
 */
export async function startBalancer(
  listen: Backend,
  backends: readonly Backend[],
  log: Logger,
): Promise<RunningBalancer> {
  if (backends.length === 0) throw new Error("a balancer needs at least one backend");
  const connections = new Map(backends.map((b) => [key(b), 0]));
  let next = 0;
  const open = new Set<Socket>();

  const pass = (client: Socket): void => {
    open.add(client);
    client.on("close", () => open.delete(client));
    client.pause();
    // Chosen when the connection arrives, so that connections arriving together are spread too.
    const first = next;
    next = (next + 1) % backends.length;
    const tryBackend = (attempt: number): void => {
      if (attempt >= backends.length) {
        log.warn({ listen: key(listen) }, "no replica accepted the connection");
        client.destroy();
        return;
      }
      const b = backends[(first + attempt) % backends.length] as Backend;
      const upstream = connect(b.port, b.host);
      const refused = (): void => {
        upstream.destroy();
        tryBackend(attempt + 1);
      };
      upstream.once("error", refused);
      upstream.once("connect", () => {
        upstream.off("error", refused);
        connections.set(key(b), (connections.get(key(b)) ?? 0) + 1);
        open.add(upstream);
        upstream.on("close", () => open.delete(upstream));
        // Either side's end or error ends the other.
        upstream.on("error", () => client.destroy());
        client.on("error", () => upstream.destroy());
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
    };
    tryBackend(0);
  };

  const server: Server = createServer(pass);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  log.info({ listen: key(listen), backends: backends.map(key) }, "balancer in front of the replicas");
  return {
    address: listen,
    connections,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}

/** A port the system has free on `host` now (for a replica whose address the balancer must know first). */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, host, () => {
      const address = probe.address();
      probe.close(() => {
        if (address && typeof address === "object") resolve(address.port);
        else reject(new Error(`no free port on ${host}`));
      });
    });
  });
}

const key = (b: Backend): string => `${b.host}:${String(b.port)}`;
