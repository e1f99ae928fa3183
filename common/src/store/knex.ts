import { readFileSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import knexFactory, { type Knex } from "knex";
import ClientPgLite from "knex-pglite";
import type { StoreConfig } from "./config.ts";

export async function createKnex(config: StoreConfig): Promise<Knex> {
  if (config.type === "postgres") {
    return knexFactory({
      client: "pg",
      connection: {
        connectionString: config.url,
        ...(config.password === undefined ? {} : { password: config.password }),
      },
      pool: { min: 0, max: config.pool_max },
    });
  }
  if (config.data_dir !== "memory://") {
    await mkdir(config.data_dir, { recursive: true });
    claimDataDir(config.data_dir);
  }
  return knexFactory({
    client: ClientPgLite,
    dialect: "postgres",
    connection: config.data_dir === "memory://" ? {} : { filename: config.data_dir },
  });
}

/**
 * PGlite is one process's embedded database: two processes opening the same folder would each
 * keep their own copy in memory and overwrite each other's writes. A pid file refuses a second
 * process while the first lives; a stale one (crashed owner) is taken over.
 */
function claimDataDir(dir: string): void {
  const lock = join(dir, "medmesh.pid");
  let owner: number | undefined;
  try {
    owner = Number(readFileSync(lock, "utf8").trim());
  } catch {
    owner = undefined;
  }
  if (owner !== undefined && owner !== process.pid && Number.isInteger(owner) && isAlive(owner)) {
    throw new Error(
      `the embedded store ${dir} is in use by process ${String(owner)}; run one instance per PGlite folder, or use PostgreSQL for several`,
    );
  }
  writeFileSync(lock, `${String(process.pid)}\n`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
