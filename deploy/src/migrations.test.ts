import { BRIDGE_MIGRATIONS } from "@medmesh/bridge";
import { COMMON_MIGRATIONS, createStore, type Migration } from "@medmesh/common";
import { LEGACY_CAPABILITIES } from "@medmesh/common/store";
import { storeBackends } from "../../common/src/store/test-backends.ts";
import { POLICY_MODULE_MIGRATIONS } from "@medmesh/policy-module";
import { describe, expect, it } from "vitest";

// Every capability's migrations, as the services a deployment runs compose them.
const ALL: readonly Migration[] = [...COMMON_MIGRATIONS, ...POLICY_MODULE_MIGRATIONS, ...BRIDGE_MIGRATIONS];

describe("migration versions", () => {
  it("are one number space: no two steps share a version (the next step takes the next free number)", () => {
    const versions = ALL.map((m) => m.version);
    expect(new Set(versions).size).toBe(versions.length);
  });

  it("keep the versions, names and owners released before capabilities named theirs", () => {
    for (const [version, capability] of Object.entries(LEGACY_CAPABILITIES))
      expect(ALL.find((m) => m.version === Number(version))?.capability, `version ${version}`).toBe(
        capability,
      );
  });
});

// Production runs the policy module and the bridge on one PostgreSQL database (deploy/src/generate.ts).
for (const backend of storeBackends()) {
  describe(`one database for the policy module and the bridge, on ${backend.name}`, () => {
    for (const [first, second] of [
      [POLICY_MODULE_MIGRATIONS, BRIDGE_MIGRATIONS],
      [BRIDGE_MIGRATIONS, POLICY_MODULE_MIGRATIONS],
    ] as const)
      it(`opens with either service first (${first === BRIDGE_MIGRATIONS ? "bridge" : "policy module"} first)`, async () => {
        const db = await backend.make();
        const { config } = db;
        try {
          await (await createStore(config, { migrations: first })).close();
          const store = await createStore(config, { migrations: second });
          const applied = await store
            .knex("medmesh_schema_migrations")
            .orderBy("version")
            .pluck<number[]>("version");
          expect(applied).toEqual(ALL.map((m) => m.version).sort((a, b) => a - b));
          await store.close();
          // And again, each on a database the other one migrated last.
          await (await createStore(config, { migrations: first })).close();
        } finally {
          await db.cleanup();
        }
      });
  });
}
