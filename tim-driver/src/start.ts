import { createLogger, listen, parseConfig } from "@medmesh/common";
import type { Logger } from "pino";
import { createDriverApp } from "./app.ts";
import { TimDriverConfigSchema, type TimDriverConfig } from "./config.ts";
import { Housekeeping } from "./cleanup.ts";
import { DevicePool } from "./devices.ts";
import { DriverState } from "./persistence.ts";
import { permissionConfigType } from "./permission-config.ts";

export interface RunningTimDriver {
  readonly url: string;
  readonly pool: DevicePool;
  /**
   * Stops the driver and starts it again from its config, on the same address: with a data_dir the
   * devices go on from what it wrote (their crypto stores are dropped from memory at the stop).
   */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** The production start of one test driver; the runner and the tests both call it. */
export async function startTimDriver(
  raw: unknown,
  opts: { log?: Logger; source?: string } = {},
): Promise<RunningTimDriver> {
  const config: TimDriverConfig = parseConfig(TimDriverConfigSchema, raw, opts.source ?? "tim-driver config");
  const log = opts.log ?? createLogger("tim-driver", config.log_level);
  let current = await boot(config, log);
  return {
    get url() {
      return current.url;
    },
    get pool() {
      return current.pool;
    },
    async restart() {
      const t0 = Date.now();
      await current.stop();
      log.info({ ms: Date.now() - t0 }, "driver stopped for a restart");
      current = await boot(
        { ...config, listen: { ...config.listen, port: Number(new URL(current.url).port) } },
        log,
      );
    },
    stop: () => current.stop(),
  };
}

async function boot(
  config: TimDriverConfig,
  log: Logger,
): Promise<{ url: string; pool: DevicePool; stop(): Promise<void> }> {
  const pool = new DevicePool(
    config.accounts.map((a) => ({ username: a.username, password: a.password, displayName: a.display_name })),
    config.homeserver.client_url,
    log,
    config.data_dir ? { state: new DriverState(config.data_dir) } : {},
  );
  const housekeeping = new Housekeeping(
    config.homeserver.client_url,
    log,
    permissionConfigType(config.profile),
  );
  await housekeeping.prepare(pool.devices.map((d) => d.account));
  await pool.resume();
  const server = await listen(
    createDriverApp(config, pool, housekeeping, log),
    config.listen.host,
    config.listen.port,
  );
  log.info({ url: server.url, homeserver: config.homeserver.server_name }, "TI-M test driver listening");
  return {
    url: server.url,
    pool,
    async stop() {
      await server.close();
      await pool.stop();
      await housekeeping.stop();
    },
  };
}
