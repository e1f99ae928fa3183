import { readFileSync } from "node:fs";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import type { ProxyConfig } from "./config.ts";
import { createForwarder, type Forwarder } from "./forward.ts";

export interface RunningProxy {
  clientUrl: string;
  federationUrl: string;
  stop(): Promise<void>;
}

/**
 * The enforcement point in front of Synapse: one listener for the client-server API and one (TLS)
 * for federation, each forwarding to Synapse's loopback listener. Policy capabilities (trust list,
 * invite permissions, directory, …) hook in here; today it forwards everything.
 */
export async function startProxy(
  config: ProxyConfig,
  clientUpstream: URL,
  deps: { log: Logger; metrics: Registry },
): Promise<RunningProxy> {
  const requests = new Counter({
    name: "medmesh_proxy_requests_total",
    help: "Requests through the MedMesh proxy, by listener, method and status class",
    labelNames: ["listener", "method", "status"] as const,
    registers: [deps.metrics],
  });
  const duration = new Histogram({
    name: "medmesh_proxy_response_seconds",
    help: "Time until the homeserver's response headers passed the proxy",
    labelNames: ["listener"] as const,
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
    registers: [deps.metrics],
  });
  const common = { log: deps.log, requests, duration };
  const client = createForwarder({ ...common, listener: "client", upstream: clientUpstream, scheme: "http" });
  const federation = createForwarder({
    ...common,
    listener: "federation",
    upstream: new URL(config.federation.upstream),
    scheme: "https",
  });
  const tls = {
    cert: readFileSync(config.federation.tls.certificate),
    key: readFileSync(config.federation.tls.private_key),
  };
  const servers: Server[] = [];
  try {
    const clientServer = await listenOn(createHttpServer(client), config.client.host, config.client.port);
    servers.push(clientServer);
    const federationServer = await listenOn(
      createHttpsServer(tls, federation),
      config.federation.host,
      config.federation.port,
    );
    servers.push(federationServer);
    deps.log.info(
      { client: address(clientServer), federation: address(federationServer) },
      "proxy listening",
    );
    return {
      clientUrl: `http://${address(clientServer)}`,
      federationUrl: `https://${address(federationServer)}`,
      stop: async () => {
        await Promise.all(servers.map(close));
        for (const f of [client, federation] as Forwarder[]) f.agent.destroy();
      },
    };
  } catch (err) {
    await Promise.all(servers.map(close));
    throw err;
  }
}

async function listenOn(server: Server, host: string, port: number): Promise<Server> {
  // Long uploads and long-polls are legitimate; slow header dribbling is not.
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return server;
}

function address(server: Server): string {
  const a = server.address() as AddressInfo;
  return a.family === "IPv6" ? `[${a.address}]:${String(a.port)}` : `${a.address}:${String(a.port)}`;
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => {
      resolve();
    });
    server.closeAllConnections();
  });
}
