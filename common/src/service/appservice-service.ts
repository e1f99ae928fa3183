import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Express } from "express";
import { Counter } from "prom-client";
import type { Registry } from "prom-client";
import type { Logger } from "pino";
import type { ServiceConfig } from "../config/service.ts";
import { createAuditLog } from "../audit/index.ts";
import { createCatchUp } from "../appservice/catch-up.ts";
import { createDeadLetters, mountDeadLetterApi } from "../appservice/dead-letters.ts";
import { loadRegistration, type Registration } from "../appservice/registration.ts";
import { homeserverTokenCheck, mountAppserviceApi, type EventHandler } from "../appservice/transactions.ts";
import { asUser } from "../synapse/as-user.ts";
import {
  adminAuthenticator,
  cachedTokenLookup,
  synapseTokenLookup,
  type Authenticate,
  type RouteGroup,
} from "../http/auth.ts";
import {
  createListenerApp,
  createServiceApp,
  jsonBody,
  listen,
  type HealthCheck,
  type RunningServer,
} from "../http/service.ts";
import { createLogger } from "../logging.ts";
import { createMetricsRegistry } from "../metrics.ts";
import { createStore, type Migration, type Store } from "../store/index.ts";

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

export interface MountContext {
  store: Store;
  log: Logger;
  metrics: Registry;
  registration: Registration;
}

/** A listener beside the internal one that serves only its route groups (e.g. a public API). */
export interface ListenerDefinition {
  /** Its key in `RunningService.endpoints`. */
  name: string;
  listen: { host: string; port: number };
  routeGroups: readonly RouteGroup[];
  /** Its routes; called after the service's `mount`. */
  mount: (app: Express) => void;
}

export interface ServiceDefinition {
  name: string;
  /** The migrations of the capabilities the service runs (the store's own are always applied). */
  migrations: readonly Migration[];
  /**
   * The transaction's events (room events Synapse had not sent yet first, marked `CAUGHT_UP`),
   * handled idempotently by event ID. A `Permanent` failure of one event makes it a dead letter;
   * any other failure answers the transaction with 500 (Synapse sends it again).
   */
  onEvents: EventHandler;
  /**
   * A user the appservice can act as who can read the room (a ghost in a portal, a bot), for the
   * catch-up on transactions Synapse holds back and for fetching a dead letter again; undefined:
   * none there. Without it the frame does not catch up.
   */
  readerFor?: (roomId: string) => Promise<string | undefined>;
  /**
   * Extra routes of the service (its REST API), mounted after the appservice API on the internal
   * listener: admin only, unless `routeGroups` gives their path prefix another authentication.
   */
  mount?: (app: Express, ctx: MountContext) => void;
  /** Internal-listener APIs with their own authentication (the appservice API's is built in). */
  routeGroups?: readonly RouteGroup[];
  /** Further listeners, each serving only its route groups. */
  listeners?: readonly ListenerDefinition[];
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
  const admin = adminCheck(config);
  const store = await createStore(config.store, { log, migrations: def.migrations });
  try {
    const counter = new Counter({
      name: "medmesh_appservice_transactions_total",
      help: "Appservice transactions received from the homeserver",
      labelNames: ["outcome"] as const,
      registers: [metrics],
    });
    const as = (userId: string) => asUser(config.homeserver.url, registration.as_token, userId);
    const catchUp = createCatchUp({
      service: def.name,
      knex: store.knex,
      as,
      readerFor: def.readerFor,
      log,
      metrics,
    });
    await catchUp.init();
    const namespaces = registration.namespaces.users.map((n) => new RegExp(`^(?:${n.regex})$`));
    const deadLetters = createDeadLetters({
      service: def.name,
      knex: store.knex,
      audit: createAuditLog(store.knex),
      botUserId: `@${registration.sender_localpart}:${config.homeserver.server_name}`,
      as,
      readerFor: def.readerFor,
      isOwnUser: (userId) => namespaces.some((n) => n.test(userId)),
      log,
      metrics,
    });
    const onEvents: EventHandler = async (events, transaction) => {
      const all = await catchUp.prepare(events);
      await deadLetters.handle(all, transaction, def.onEvents);
      await catchUp.handled(all);
    };
    const homeserverCheck: HealthCheck = async () => {
      const res = await fetch(new URL("/_matrix/client/versions", config.homeserver.url), {
        signal: AbortSignal.timeout(3000),
      });
      if (!res.ok) throw new Error(`homeserver answered ${res.status}`);
    };
    // The homeserver's pings that arrived (the start-up ping's proof, pingThroughHomeserver).
    const pings = new Set<string>();
    const app = createServiceApp(
      {
        name: def.name,
        log,
        metrics,
        healthChecks: { store: () => store.health(), homeserver: homeserverCheck, ...def.healthChecks },
        admin,
        routeGroups: [
          {
            prefix: "/_matrix/app/",
            authenticate: homeserverTokenCheck(registration),
            description: "the homeserver → appservice API (the registration's hs_token)",
          },
          ...(def.routeGroups ?? []),
        ],
      },
      (a) => {
        a.use(jsonBody("10mb"));
        mountAppserviceApi(a, {
          registration,
          journal: store.transactions,
          onEvents,
          counter,
          onFailed: () => {
            catchUp.suspect();
          },
          onPing: (id) => pings.add(id),
        });
        mountDeadLetterApi(a, deadLetters, def.onEvents);
        def.mount?.(a, { store, log, metrics, registration });
      },
    );
    const servers: RunningServer[] = [];
    const closeAll = () => Promise.all(servers.map((s) => s.close()));
    const server = await listen(app, config.listen.host, config.listen.port);
    servers.push(server);
    const listenerUrls: Record<string, string> = {};
    try {
      for (const l of def.listeners ?? []) {
        const extra = createListenerApp({ log, routeGroups: l.routeGroups }, l.mount);
        const running = await listen(extra, l.listen.host, l.listen.port);
        servers.push(running);
        listenerUrls[l.name] = running.url;
      }
      await pingThroughHomeserver(config, registration, opts.pingTimeoutMs ?? 30_000, pings, log);
    } catch (err) {
      await closeAll();
      throw err;
    }
    const roles: StartedRole[] = [];
    try {
      for (const startRole of def.roles ?? [])
        roles.push(await startRole({ log, metrics, store, registration }));
    } catch (err) {
      await Promise.all(roles.map((r) => r.stop()));
      await closeAll();
      throw err;
    }
    catchUp.ready();
    const endpoints = Object.assign({}, listenerUrls, ...roles.map((r) => r.endpoints)) as Record<
      string,
      string
    >;
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
        await closeAll();
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

/** The internal listener's admin check, from the `admin` section (docs/production.md). */
export function adminCheck(config: ServiceConfig): Authenticate {
  const { token_file: file, matrix_admins, synapse_url, cache_seconds } = config.admin;
  return adminAuthenticator({
    token: file === undefined ? undefined : readAdminToken(file),
    matrix: matrix_admins
      ? cachedTokenLookup(synapseTokenLookup(synapse_url ?? config.homeserver.url), {
          ttlMs: cache_seconds * 1000,
        })
      : undefined,
    serverName: config.homeserver.server_name,
  });
}

function readAdminToken(file: string): string {
  let token: string;
  try {
    token = readFileSync(file, "utf8").trim();
  } catch (err) {
    throw new Error(`admin.token_file: cannot read ${file}: ${(err as Error).message}`, { cause: err });
  }
  if (token.length < 32)
    throw new Error(`admin.token_file: ${file} must hold a random token of at least 32 characters`);
  return token;
}

/**
 * Asks Synapse to ping this appservice: proof that Synapse knows it and reaches it with the right
 * hs_token. `heard` holds the pings that arrived here: a ping that arrived counts although Synapse
 * then answered 502 ("AlreadyCalled": Synapse 1.163 sometimes fails after the 200, seen when a
 * replica is restarted on a killed one's port).
 */
async function pingThroughHomeserver(
  config: ServiceConfig,
  reg: Registration,
  timeoutMs: number,
  heard: ReadonlySet<string>,
  log: Logger,
): Promise<void> {
  const url = new URL(
    `/_matrix/client/v1/appservice/${encodeURIComponent(reg.id)}/ping`,
    config.homeserver.url,
  );
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    const transactionId = `startup-${String(Date.now())}-${randomBytes(4).toString("hex")}`;
    try {
      const res = await fetch(url, {
        method: "POST",
        headers: { authorization: `Bearer ${reg.as_token}`, "content-type": "application/json" },
        body: JSON.stringify({ transaction_id: transactionId }),
        signal: AbortSignal.timeout(5000),
      });
      if (res.ok) return;
      last = `${String(res.status)} ${await res.text()}`;
      if (heard.has(transactionId)) {
        log.warn({ answer: last }, "the homeserver's ping arrived, but it answered with an error; going on");
        return;
      }
      // A wrong as_token or an unknown appservice will not fix itself by waiting.
      if (res.status === 401 || res.status === 403 || res.status === 404) break;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`appservice '${reg.id}' could not ping itself through ${config.homeserver.url}: ${last}`);
}
