import { createLogger, listen, parseConfig } from "@medmesh/common";
import type { Logger } from "pino";
import { createDriverApp } from "./app.ts";
import { TimDriverConfigSchema, type TimDriverConfig } from "./config.ts";
import { Housekeeping } from "./cleanup.ts";
import { DevicePool } from "./devices.ts";
import { permissionConfigType } from "./permission-config.ts";

export interface RunningTimDriver {
  readonly url: string;
  readonly pool: DevicePool;
  stop(): Promise<void>;
}

/** The production start of one test driver; the runner and the tests both call it. */
export async function startTimDriver(
  raw: unknown,
  opts: { log?: Logger; source?: string } = {},
): Promise<RunningTimDriver> {
  const config: TimDriverConfig = parseConfig(TimDriverConfigSchema, raw, opts.source ?? "tim-driver config");
  const log = opts.log ?? createLogger("tim-driver", config.log_level);
  const pool = new DevicePool(
    config.accounts.map((a) => ({ username: a.username, password: a.password, displayName: a.display_name })),
    config.homeserver.client_url,
    log,
  );
  const housekeeping = new Housekeeping(
    config.homeserver.client_url,
    log,
    permissionConfigType(config.profile),
  );
  await housekeeping.prepare(pool.devices.map((d) => d.account));
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
