import type { Express } from "express";
import { Counter } from "prom-client";
import type { Registry } from "prom-client";
import type { Logger } from "pino";
import type { ServiceConfig } from "../config/service.ts";
import { loadRegistration, type Registration } from "../appservice/registration.ts";
import { mountAppserviceApi, type EventHandler } from "../appservice/transactions.ts";
import { createServiceApp, jsonBody, listen, type HealthCheck } from "../http/service.ts";
import { createLogger } from "../logging.ts";
import { createMetricsRegistry } from "../metrics.ts";
import { createStore, type Store } from "../store/index.ts";

export interface RunningService {
  readonly name: string;
  readonly url: string;
  /** Further endpoints a role opened (e.g. the proxy's client and federation URLs), by name. */
  readonly endpoints: Readonly<Record<string, string>>;
  readonly store: Store;
  readonly registration: Registration;
  readonly log: Logger;
  readonly metrics: Registry;
  stop(): Promise<void>;
}

export interface ServiceDefinition {
  name: string;
  onEvents: EventHandler;
  /** Extra routes of the service (its REST API); mounted after the appservice API. */
  mount?: (
    app: Express,
    ctx: { store: Store; log: Logger; metrics: Registry; registration: Registration },
  ) => void;
  healthChecks?: Record<string, HealthCheck>;
  /** Roles started once the service is ready (e.g. the proxy), stopped first on shutdown. */
  roles?: ((ctx: {
    log: Logger;
    metrics: Registry;
    store: Store;
    registration: Registration;
  }) => Promise<StartedRole>)[];
}

export interface StartedRole {
  endpoints: Record<string, string>;
  stop(): Promise<void>;
}

export interface StartOptions {
  log?: Logger;
  metrics?: Registry;
  /** How long start() keeps retrying the appservice ping while the homeserver comes up. */
  pingTimeoutMs?: number;
}

/**
 * The common start of every MedMesh appservice: store (migrated), HTTP with /health, /metrics and
 * the appservice API, then a round-trip ping through Synapse (client API → Synapse → our
 * appservice URL with hs_token), which proves both tokens and both directions before we report
 * ready. A service that cannot prove that fails to start instead of running half-connected.
 */
export async function startAppserviceService(
  def: ServiceDefinition,
  config: ServiceConfig,
  opts: StartOptions = {},
): Promise<RunningService> {
  const log = opts.log ?? createLogger(def.name, config.log_level);
  const metrics = opts.metrics ?? createMetricsRegistry(def.name);
  const registration = loadRegistration(config.appservice.registration_file);
  const store = await createStore(config.store, log);
  try {
    const counter = new Counter({
      name: "medmesh_appservice_transactions_total",
      help: "Appservice transactions received from the homeserver",
      labelNames: ["outcome"] as const,
      registers: [metrics],
    });
    const homeserverCheck: HealthCheck = async () => {
      const res = await fetch(new URL("/_matrix/client/versions", config.homeserver.url), {
        signal: AbortSignal.timeout(3000),
      });
      if (!res.ok) throw new Error(`homeserver answered ${res.status}`);
    };
    const app = createServiceApp(
      {
        name: def.name,
        log,
        metrics,
        healthChecks: { store: () => store.health(), homeserver: homeserverCheck, ...def.healthChecks },
      },
      (a) => {
        a.use(jsonBody("10mb"));
        mountAppserviceApi(a, { registration, journal: store.transactions, onEvents: def.onEvents, counter });
        def.mount?.(a, { store, log, metrics, registration });
      },
    );
    const server = await listen(app, config.listen.host, config.listen.port);
    try {
      await pingThroughHomeserver(config, registration, opts.pingTimeoutMs ?? 30_000);
    } catch (err) {
      await server.close();
      throw err;
    }
    const roles: StartedRole[] = [];
    try {
      for (const startRole of def.roles ?? [])
        roles.push(await startRole({ log, metrics, store, registration }));
    } catch (err) {
      await Promise.all(roles.map((r) => r.stop()));
      await server.close();
      throw err;
    }
    const endpoints = Object.assign({}, ...roles.map((r) => r.endpoints)) as Record<string, string>;
    log.info(
      { url: server.url, ...endpoints, server_name: config.homeserver.server_name },
      `${def.name} ready`,
    );
    return {
      name: def.name,
      url: server.url,
      endpoints,
      store,
      registration,
      log,
      metrics,
      stop: async () => {
        await Promise.all(roles.map((r) => r.stop()));
        await server.close();
        await store.close();
        log.info(`${def.name} stopped`);
        await new Promise<void>((resolve) => {
          log.flush(() => {
            resolve();
          });
        });
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}

async function pingThroughHomeserver(
  config: ServiceConfig,
  reg: Registration,
  timeoutMs: number,
): Promise<void> {
  const url = new URL(
    `/_matrix/client/v1/appservice/${encodeURIComponent(reg.id)}/ping`,
    config.homeserver.url,
  );
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { authorization: `Bearer ${reg.as_token}`, "content-type": "application/json" },
        body: JSON.stringify({ transaction_id: `startup-${String(Date.now())}` }),
        signal: AbortSignal.timeout(5000),
      });
      if (res.ok) return;
      last = `${String(res.status)} ${await res.text()}`;
      // A wrong as_token or an unknown appservice will not fix itself by waiting.
      if (res.status === 401 || res.status === 403 || res.status === 404) break;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`appservice '${reg.id}' could not ping itself through ${config.homeserver.url}: ${last}`);
}
