import { mkdir } from "node:fs/promises";
import knexFactory, { type Knex } from "knex";
import ClientPgLite from "knex-pglite";
import type { StoreConfig } from "./config.ts";

export async function createKnex(config: StoreConfig): Promise<Knex> {
  if (config.type === "postgres") {
    return knexFactory({ client: "pg", connection: config.url, pool: { min: 0, max: config.pool_max } });
  }
  if (config.data_dir !== "memory://") await mkdir(config.data_dir, { recursive: true });
  return knexFactory({
    client: ClientPgLite,
    dialect: "postgres",
    connection: config.data_dir === "memory://" ? {} : { filename: config.data_dir },
  });
}
