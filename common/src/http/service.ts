import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import express, { type Express, type RequestHandler } from "express";
import type { Registry } from "prom-client";
import type { Logger } from "pino";
import { ApiError, errorMiddleware } from "./errors.ts";

export type HealthCheck = () => Promise<void>;

export interface ServiceAppOptions {
  name: string;
  log: Logger;
  metrics: Registry;
  /** Named checks run on every GET /health; any failure turns the answer into 503. */
  healthChecks: Record<string, HealthCheck>;
}

/**
 * The common shape of every MedMesh HTTP service: /health, /metrics, JSON errors in the Matrix
 * format. Callers mount their routes with `mount` before the error middleware is attached.
 */
/** JSON bodies, keeping the bytes as sent (`req.rawBody`): signed requests are checked against them. */
export function jsonBody(limit: string): RequestHandler {
  return express.json({
    limit,
    verify: (req, _res, buf) => {
      (req as { rawBody?: Buffer }).rawBody = Buffer.from(buf);
    },
  });
}

export function createServiceApp(opts: ServiceAppOptions, mount: (app: Express) => void): Express {
  const app = express();
  app.disable("x-powered-by");
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
  app.get("/metrics", async (_req, res) => {
    res.type(opts.metrics.contentType).send(await opts.metrics.metrics());
  });
  mount(app);
  app.use((req, _res, next) => {
    next(new ApiError("M_UNRECOGNIZED", `Unrecognized request: ${req.method} ${req.path}`));
  });
  app.use(errorMiddleware(opts.log));
  return app;
}

export interface RunningServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function listen(app: Express, host: string, port: number): Promise<RunningServer> {
  const server: Server = createServer(app);
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
