import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import knexFactory from "knex";
import type { StoreConfig } from "./config.ts";

export interface TestBackend {
  name: string;
  /** A fresh, empty database, and how to throw it away. */
  make(): Promise<{ config: StoreConfig; cleanup(): Promise<void> }>;
}

/**
 * The backends a test of a capability store runs on: PGlite always, PostgreSQL when
 * MEDMESH_TEST_POSTGRES_URL names a server (.ci/start-postgres.sh prints one), as the store suite.
 */
export function storeBackends(): TestBackend[] {
  const backends: TestBackend[] = [
    {
      name: "PGlite",
      make: async () => {
        const dir = await mkdtemp(join(tmpdir(), "medmesh-pglite-"));
        return {
          config: { type: "pglite", data_dir: dir },
          // PGlite writes its files back after close resolves: removing the folder can meet one
          // that appears meanwhile (ENOTEMPTY, seen in CI), so the removal is retried.
          cleanup: () => rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }),
        };
      },
    },
  ];
  const serverUrl = process.env.MEDMESH_TEST_POSTGRES_URL;
  if (serverUrl)
    backends.push({
      name: "PostgreSQL",
      make: async () => {
        const name = `medmesh_test_${randomBytes(6).toString("hex")}`;
        const admin = knexFactory({ client: "pg", connection: serverUrl, pool: { min: 0, max: 1 } });
        await admin.raw(`CREATE DATABASE ${name}`);
        const url = new URL(serverUrl);
        url.pathname = `/${name}`;
        return {
          config: { type: "postgres", url: url.toString(), pool_max: 5 },
          cleanup: async () => {
            await admin.raw(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
            await admin.destroy();
          },
        };
      },
    });
  else if (process.env.CI)
    throw new Error(
      "MEDMESH_TEST_POSTGRES_URL is not set: run .ci/start-postgres.sh and export the URL it prints",
    );
  return backends;
}
