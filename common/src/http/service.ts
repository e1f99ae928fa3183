import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import express, { type Express, type RequestHandler } from "express";
import type { Registry } from "prom-client";
import type { Logger } from "pino";
import { routeGuard, type Authenticate, type RouteGroup } from "./auth.ts";
import { ApiError, errorMiddleware } from "./errors.ts";

export type HealthCheck = () => Promise<void>;

export interface ServiceAppOptions {
  name: string;
  log: Logger;
  metrics: Registry;
  /** Named checks run on every GET /health; any failure turns the answer into 503. */
  healthChecks: Record<string, HealthCheck>;
  /** Checks the callers of every path no route group claims: /metrics and the admin API. */
  admin: Authenticate;
  /** APIs on this listener that authenticate their callers their own way (e.g. the appservice API). */
  routeGroups?: readonly RouteGroup[];
}

/** JSON bodies, keeping the bytes as sent (`req.rawBody`): signed requests are checked against them. */
export function jsonBody(limit: string): RequestHandler {
  return express.json({
    limit,
    verify: (req, _res, buf) => {
      (req as { rawBody?: Buffer }).rawBody = Buffer.from(buf);
    },
  });
}

/**
 * The internal listener of every MedMesh service: /health (open, for load balancers), then, behind
 * the route guard, /metrics and the admin API (admins only) and the route groups that
 * authenticate themselves; JSON errors in the Matrix format. Callers mount their routes with
 * `mount` before the error middleware is attached.
 */
export function createServiceApp(opts: ServiceAppOptions, mount: (app: Express) => void): Express {
  const app = bareApp();
  app.get("/health", async (_req, res) => {
    const results: Record<string, string> = {};
    let ok = true;
    for (const [check, run] of Object.entries(opts.healthChecks)) {
      try {
        await run();
        results[check] = "ok";
      } catch (err) {
        ok = false;
        results[check] = err instanceof Error ? err.message : String(err);
      }
    }
    res.status(ok ? 200 : 503).json({ service: opts.name, status: ok ? "ok" : "unhealthy", checks: results });
  });
  // Before any body is parsed: an unauthenticated caller costs no more than this check.
  app.use(routeGuard(opts.admin, opts.routeGroups ?? []));
  app.get("/metrics", async (_req, res) => {
    res.type(opts.metrics.contentType).send(await opts.metrics.metrics());
  });
  mount(app);
  return finish(app, opts.log);
}

/**
 * A listener serving only its route groups (e.g. the bridge's vendor-facing interop API): any
 * other path, /health, /metrics and the admin API included, is not found there.
 */
export function createListenerApp(
  opts: { log: Logger; routeGroups: readonly RouteGroup[] },
  mount: (app: Express) => void,
): Express {
  const app = bareApp();
  app.use(routeGuard(unrecognized, opts.routeGroups));
  mount(app);
  return finish(app, opts.log);
}

function bareApp(): Express {
  const app = express();
  app.disable("x-powered-by");
  // Route groups match paths by exact prefix; routes must match the same way.
  app.set("case sensitive routing", true);
  return app;
}

const unrecognized: Authenticate = (req) =>
  Promise.reject(new ApiError("M_UNRECOGNIZED", `Unrecognized request: ${req.method} ${req.path}`));

function finish(app: Express, log: Logger): Express {
  app.use((req, _res, next) => {
    unrecognized(req).catch(next);
  });
  app.use(errorMiddleware(log));
  return app;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function listen(app: Express, host: string, port: number): Promise<RunningServer> {
  const server: Server = createServer(app);
  // Idle connections stay open longer than Synapse keeps them in its pool (120 s): closed first
  // here, a request Synapse sent on one at that moment would fail (RequestTransmissionFailed).
  server.keepAliveTimeout = 180_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const actual = (server.address() as AddressInfo).port;
  const urlHost = host.includes(":") ? `[${host}]` : host;
  return {
    url: `http://${urlHost}:${actual}`,
    port: actual,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => {
          if (err) reject(err);
          else resolve();
        });
        server.closeAllConnections();
      }),
  };
}
