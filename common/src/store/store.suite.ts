import { describe, expect, it } from "vitest";
import type { StoreConfig } from "./config.ts";
import { createKnex } from "./knex.ts";
import { COMMON_MIGRATIONS } from "./common-migrations.ts";
import { LEGACY_CAPABILITIES, migrate, SchemaTooNewError, type Migration } from "./migrations.ts";
import { createStore } from "./store.ts";

const MIGRATIONS = COMMON_MIGRATIONS;
const HISTORY = "medmesh_schema_migrations";
/** A capability's step that creates a table of its name (the tests' stand-ins for identity, bridge, …). */
const step = (version: number, capability: string): Migration => ({
  version,
  capability,
  name: `${capability} ${String(version)}`,
  up: (trx) => trx.schema.createTable(`${capability}_${String(version)}`, (t) => t.integer("x")),
});

export interface Backend {
  config: StoreConfig;
  /**
   * Whether several store instances (processes) may open the database at once. True for a
   * PostgreSQL server; false for PGlite, which is one process's embedded database.
   */
  multiInstance: boolean;
  cleanup(): Promise<void>;
}

/**
 * The one store suite. Every backend (PGlite, PostgreSQL) runs it unchanged, so a behaviour that
 * holds on the embedded default also holds in production.
 */
export function storeSuite(name: string, makeBackend: () => Promise<Backend>): void {
  const withBackend = async (fn: (b: Backend) => Promise<void>): Promise<void> => {
    const backend = await makeBackend();
    try {
      await fn(backend);
    } finally {
      await backend.cleanup();
    }
  };

  describe(`store on ${name}`, () => {
    it("migrates an empty database, is idempotent, and keeps data across reopen", () =>
      withBackend(async ({ config }) => {
        const store = await createStore(config);
        const versions = (await store
          .knex("medmesh_schema_migrations")
          .orderBy("version")
          .pluck("version")) as number[];
        expect(versions).toEqual(MIGRATIONS.map((m) => m.version));
        expect(await store.transactions.markProcessed("svc", "txn-1")).toBe(true);
        await store.close();

        const reopened = await createStore(config);
        expect(await reopened.transactions.isProcessed("svc", "txn-1")).toBe(true);
        const count = await reopened.knex("medmesh_schema_migrations").count<{ n: string }[]>({ n: "*" });
        expect(Number(count[0]?.n)).toBe(MIGRATIONS.length);
        await reopened.close();
      }));

    it("refuses a database whose schema is newer than the code", () =>
      withBackend(async ({ config }) => {
        const store = await createStore(config);
        const latest = Math.max(...MIGRATIONS.map((m) => m.version));
        const future = 1000;
        await store.knex(HISTORY).insert({ version: future, name: "from the future", capability: "common" });
        await store.close();
        const attempt = createStore(config);
        await expect(attempt).rejects.toBeInstanceOf(SchemaTooNewError);
        await expect(attempt).rejects.toThrow(
          new RegExp(`common's version ${String(future)}, newer than this code's ${String(latest)}`),
        );
      }));

    it("refuses an unknown step no capability claims (fail closed)", () =>
      withBackend(async ({ config }) => {
        const store = await createStore(config);
        await store.knex(HISTORY).insert({ version: 1000, name: "untagged" });
        await store.close();
        await expect(createStore(config)).rejects.toBeInstanceOf(SchemaTooNewError);
      }));

    it("serves services that compose different capabilities from one database", () =>
      withBackend(async ({ config }) => {
        const policy = [step(1001, "alpha"), step(1003, "alpha")];
        const bridge = [step(1002, "beta")];
        // The bridge first, then the policy module: each applies its own steps, below the other's too.
        await (await createStore(config, { migrations: bridge })).close();
        const both = await createStore(config, { migrations: policy });
        expect(await both.knex.schema.hasTable("alpha_1001")).toBe(true);
        expect(await both.knex.schema.hasTable("beta_1002")).toBe(true);
        // A newer policy module added a step: the bridge does not run that capability, so it starts.
        await both.knex(HISTORY).insert({ version: 1004, name: "newer alpha", capability: "alpha" });
        await both.close();
        await (await createStore(config, { migrations: bridge })).close();
        await expect(createStore(config, { migrations: policy })).rejects.toThrow(
          /alpha's version 1004, newer than this code's 1003/,
        );
      }));

    it("takes over a database migrated before steps named their capability, applying nothing again", () =>
      withBackend(async ({ config }) => {
        // As every service left it: all thirteen steps in a history without capabilities.
        const knex = await createKnex(config);
        try {
          await migrate(knex, MIGRATIONS);
          await knex.schema.alterTable(HISTORY, (t) => {
            t.dropColumn("capability");
          });
          const others = Object.keys(LEGACY_CAPABILITIES)
            .map(Number)
            .filter((v) => !MIGRATIONS.some((m) => m.version === v));
          await knex(HISTORY).insert(
            others.map((version) => ({ version, name: `legacy ${String(version)}` })),
          );
        } finally {
          await knex.destroy();
        }
        let ran = 0;
        const counting = MIGRATIONS.map((m) => ({
          ...m,
          up: () => {
            ran++;
            return Promise.resolve();
          },
        }));
        const reopened = await createStore(config, { migrations: [step(1002, "beta")] });
        try {
          await migrate(reopened.knex, counting);
          expect(ran).toBe(0);
          const rows = await reopened
            .knex(HISTORY)
            .orderBy("version")
            .select<{ version: number; capability: string }[]>("version", "capability");
          expect(rows.filter((r) => r.version <= 13)).toEqual(
            Object.entries(LEGACY_CAPABILITIES).map(([v, capability]) => ({
              version: Number(v),
              capability,
            })),
          );
        } finally {
          await reopened.close();
        }
      }));

    it("refuses two capabilities' steps under one number", () =>
      withBackend(async ({ config }) => {
        await expect(
          createStore(config, { migrations: [step(1001, "alpha"), step(1001, "beta")] }),
        ).rejects.toThrow(/both take version 1001/);
        // On the history of an open store (reopening an embedded one right after closing it races
        // with its files being written back).
        const store = await createStore(config, { migrations: [step(1001, "alpha")] });
        try {
          await expect(migrate(store.knex, [step(1001, "beta")])).rejects.toThrow(
            /two capabilities took the same number/,
          );
        } finally {
          await store.close();
        }
      }));

    it("runs each migration step in its own transaction", () =>
      withBackend(async ({ config }) => {
        const knex = await createKnex(config);
        try {
          const steps: Migration[] = [
            {
              version: 1,
              capability: "test",
              name: "good",
              up: (trx) => trx.schema.createTable("good_table", (t) => t.integer("x")),
            },
            {
              version: 2,
              capability: "test",
              name: "bad",
              up: async (trx) => {
                await trx.schema.createTable("half_done", (t) => t.integer("x"));
                throw new Error("boom");
              },
            },
          ];
          await expect(migrate(knex, steps)).rejects.toThrow(/migration 2 \(bad\) failed: boom/);
          expect(await knex.schema.hasTable("good_table")).toBe(true);
          expect(await knex.schema.hasTable("half_done")).toBe(false);
          const applied = (await knex("medmesh_schema_migrations").pluck("version")) as number[];
          expect(applied).toEqual([1]);
        } finally {
          await knex.destroy();
        }
      }));

    it("lets concurrent migrators apply each step exactly once", () =>
      withBackend(async ({ config, multiInstance }) => {
        // On Postgres two instances really race and the advisory lock keeps them apart; PGlite
        // has one connection, so there concurrent calls on one instance queue.
        const knexes = multiInstance
          ? await Promise.all([createKnex(config), createKnex(config)])
          : await createKnex(config).then((k) => [k]);
        try {
          let runs = 0;
          const steps: Migration[] = [1, 2, 3].map((version) => ({
            version,
            capability: "test",
            name: `step ${String(version)}`,
            up: async (trx) => {
              runs++;
              await trx.raw("SELECT pg_sleep(0.05)");
            },
          }));
          await Promise.all([...knexes, ...knexes].map((k) => migrate(k, steps)));
          expect(runs).toBe(3);
        } finally {
          await Promise.all(knexes.map((k) => k.destroy()));
        }
      }));

    it("grants a lease to one holder at a time, extends it for its holder, and hands it over on expiry", () =>
      withBackend(async ({ config }) => {
        const store = await createStore(config);
        try {
          const t0 = new Date("2026-01-01T00:00:00Z");
          const at = (ms: number): Date => new Date(t0.getTime() + ms);
          expect(await store.leases.tryAcquire("sweep", "a", 1000, t0)).toBe(true);
          expect(await store.leases.tryAcquire("sweep", "b", 1000, at(500))).toBe(false);
          expect(await store.leases.tryAcquire("sweep", "a", 1000, at(900))).toBe(true); // extends to 1900
          expect(await store.leases.tryAcquire("sweep", "b", 1000, at(1500))).toBe(false);
          expect(await store.leases.tryAcquire("sweep", "b", 1000, at(1900))).toBe(true);
          await store.leases.release("sweep", "a"); // not the holder: no effect
          expect(await store.leases.tryAcquire("sweep", "a", 1000, at(2000))).toBe(false);
          await store.leases.release("sweep", "b");
          expect(await store.leases.tryAcquire("sweep", "a", 1000, at(2000))).toBe(true);
          expect(await store.leases.tryAcquire("other", "b", 1000, at(2000))).toBe(true);
        } finally {
          await store.close();
        }
      }));

    it("lets exactly one of many racing holders win a free lease", () =>
      withBackend(async ({ config, multiInstance }) => {
        const instances = multiInstance ? 3 : 1;
        const stores = await Promise.all(Array.from({ length: instances }, () => createStore(config)));
        try {
          const now = new Date();
          const results = await Promise.all(
            Array.from({ length: 12 }, (_, i) =>
              stores[i % stores.length]!.leases.tryAcquire("race", `holder-${String(i)}`, 60_000, now),
            ),
          );
          expect(results.filter(Boolean)).toHaveLength(1);
        } finally {
          await Promise.all(stores.map((s) => s.close()));
        }
      }));

    it("journals appservice transactions once", () =>
      withBackend(async ({ config }) => {
        const store = await createStore(config);
        try {
          expect(await store.transactions.isProcessed("bridge", "42")).toBe(false);
          expect(await store.transactions.markProcessed("bridge", "42")).toBe(true);
          expect(await store.transactions.markProcessed("bridge", "42")).toBe(false);
          expect(await store.transactions.isProcessed("bridge", "42")).toBe(true);
          expect(await store.transactions.isProcessed("policy", "42")).toBe(false);
        } finally {
          await store.close();
        }
      }));

    it("announces a notification to every instance on the database, the sender included", () =>
      withBackend(async ({ config, multiInstance }) => {
        const first = await createStore(config);
        // PGlite is one process's database: there the sender is the only listener.
        const second = multiInstance ? await createStore(config) : first;
        try {
          const heard = { first: [] as string[], second: [] as string[] };
          await first.notifications.listen("medmesh_test", (p) => heard.first.push(p));
          if (second !== first)
            await second.notifications.listen("medmesh_test", (p) => heard.second.push(p));
          await first.notifications.notify("medmesh_test", "@ann:a.example");
          await first.knex.transaction(async (trx) => {
            await trx.raw("SELECT pg_notify(?, ?)", ["medmesh_test", "after commit"]);
            await new Promise((r) => setTimeout(r, 100));
            // Not before the transaction commits.
            expect(heard.first).toEqual(["@ann:a.example"]);
          });
          const until = Date.now() + 5000;
          const want = ["@ann:a.example", "after commit"];
          while (
            (heard.first.length < 2 || (second !== first && heard.second.length < 2)) &&
            Date.now() < until
          )
            await new Promise((r) => setTimeout(r, 20));
          expect(heard.first).toEqual(want);
          if (second !== first) expect(heard.second).toEqual(want);
          await expect(first.notifications.notify("bad; DROP", "x")).rejects.toThrow(/channel name/);
        } finally {
          if (second !== first) await second.close();
          await first.close();
        }
      }));

    it("keeps named documents, replacing on put, across reopen", () =>
      withBackend(async ({ config }) => {
        const first = await createStore(config);
        try {
          expect(await first.documents.get("trust-list")).toBeUndefined();
          await first.documents.put("trust-list", "one");
          await first.documents.put("trust-list", "two");
        } finally {
          await first.close();
        }
        const again = await createStore(config);
        try {
          expect(await again.documents.get("trust-list")).toBe("two");
        } finally {
          await again.close();
        }
      }));

    it("fails its health check once closed", () =>
      withBackend(async ({ config }) => {
        const store = await createStore(config);
        await store.health();
        await store.close();
        await expect(store.health()).rejects.toThrow();
      }));
  });
}
