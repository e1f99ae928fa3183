import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { createStore } from "./store.ts";
import { storeSuite } from "./store.suite.ts";
import { storeBackends } from "./test-backends.ts";

// PGlite always; PostgreSQL when MEDMESH_TEST_POSTGRES_URL is set (under CI its absence fails the
// file: storeBackends throws). Only PostgreSQL can be opened by several instances at once.
for (const backend of storeBackends()) {
  storeSuite(backend.name, async () => ({
    ...(await backend.make()),
    multiInstance: backend.name === "PostgreSQL",
  }));
}
if (!process.env.MEDMESH_TEST_POSTGRES_URL) {
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
      await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    }
  });
});

describe("PGlite memory", () => {
  it("runs with the small buffer pool, on the first start of a folder and on a restart", async () => {
    const dir = await mkdtemp(join(tmpdir(), "medmesh-pglite-buffers-"));
    const sharedBuffers = async (): Promise<string | undefined> => {
      const store = await createStore({ type: "pglite", data_dir: dir });
      try {
        const r = await store.knex.raw<{ rows: { shared_buffers: string }[] }>("SHOW shared_buffers");
        return r.rows[0]?.shared_buffers;
      } finally {
        await store.close();
      }
    };
    try {
      // PGlite's own default is 128MB, touched at start: ~200 MiB per instance (docs/stores.md).
      expect(await sharedBuffers()).toBe("16MB");
      expect(await sharedBuffers()).toBe("16MB");
    } finally {
      await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    }
  });
});
