import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import knexFactory from "knex";
import { createStore } from "./store.ts";
import { storeSuite } from "./store.suite.ts";

storeSuite("PGlite (embedded)", async () => {
  const dir = await mkdtemp(join(tmpdir(), "medmesh-pglite-"));
  return {
    config: { type: "pglite", data_dir: dir },
    multiInstance: false,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

const serverUrl = process.env.MEDMESH_TEST_POSTGRES_URL;
if (serverUrl) {
  storeSuite("PostgreSQL", async () => {
    // A fresh database per test, created and dropped through the server's admin connection.
    const name = `medmesh_test_${randomBytes(6).toString("hex")}`;
    const admin = knexFactory({ client: "pg", connection: serverUrl, pool: { min: 0, max: 1 } });
    await admin.raw(`CREATE DATABASE ${name}`);
    const url = new URL(serverUrl);
    url.pathname = `/${name}`;
    return {
      config: { type: "postgres", url: url.toString(), pool_max: 5 },
      multiInstance: true,
      cleanup: async () => {
        await admin.raw(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await admin.destroy();
      },
    };
  });
} else if (process.env.CI) {
  describe("store on PostgreSQL", () => {
    it("needs MEDMESH_TEST_POSTGRES_URL in CI", () => {
      throw new Error(
        "MEDMESH_TEST_POSTGRES_URL is not set: run .ci/start-postgres.sh and export the URL it prints",
      );
    });
  });
} else {
  describe.skip("store on PostgreSQL (set MEDMESH_TEST_POSTGRES_URL, e.g. from .ci/start-postgres.sh)", () => {
    it("is skipped without a server", () => undefined);
  });
}

describe("PGlite folder ownership", () => {
  it("refuses a folder another live process holds and takes over a stale claim", async () => {
    const dir = await mkdtemp(join(tmpdir(), "medmesh-pglite-lock-"));
    try {
      writeFileSync(join(dir, "medmesh.pid"), "1\n"); // pid 1 is always alive
      await expect(createStore({ type: "pglite", data_dir: dir })).rejects.toThrow(/in use by process 1/);
      writeFileSync(join(dir, "medmesh.pid"), "2147483646\n"); // no such process
      const store = await createStore({ type: "pglite", data_dir: dir });
      await store.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
