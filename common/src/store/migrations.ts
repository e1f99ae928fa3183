import type { Knex } from "knex";
import type { Logger } from "pino";

/**
 * One schema step of one capability (common, identity, retention, bridge, …), which owns its
 * tables. Versions are global across capabilities: the history table is keyed by version, so
 * a new step takes the next number free over all capabilities (`migration versions` tests in
 * deploy/ list them all); a branch that loses the race renumbers before it merges. A released
 * number never changes. docs/stores.md explains the choice.
 */
export interface Migration {
  version: number;
  /** The capability whose tables the step changes; a service composes the capabilities it runs. */
  capability: string;
  name: string;
  up(trx: Knex.Transaction): Promise<void>;
}

export class SchemaTooNewError extends Error {
  override name = "SchemaTooNewError";
}

const HISTORY = "medmesh_schema_migrations";
// Arbitrary constant shared by every MedMesh instance: the advisory lock serialising migrators.
const MIGRATION_LOCK = 7_350_001;

/**
 * Steps recorded before the history named their capability (when every service ran every
 * step): whose they are. A frozen record; later steps carry their capability in their row.
 */
export const LEGACY_CAPABILITIES: Readonly<Record<number, string>> = {
  1: "common",
  2: "common",
  3: "common",
  4: "identity",
  5: "common",
  6: "identity",
  7: "retention",
  8: "bridge",
  9: "bridge",
  10: "bridge",
  11: "bridge",
  12: "bridge",
  13: "retention",
};

/**
 * Applies the pending steps of the capabilities given, each in its own transaction together with
 * its history row, under an advisory lock so concurrent starters migrate once. One database may
 * serve several services (the policy module and the bridge share one PostgreSQL in production),
 * each composing other capabilities: a step is pending when its version is not in the history,
 * and steps of capabilities this code does not run are someone else's. Refuses a database where
 * a capability this code runs has a step this code does not know (a newer MedMesh migrated it).
 */
export async function migrate(knex: Knex, migrations: readonly Migration[], log?: Logger): Promise<void> {
  const steps = distinct(migrations);
  const known = new Map(steps.map((m) => [m.version, m]));
  const capabilities = new Set(steps.map((m) => m.capability));
  // Even "IF NOT EXISTS" races between connections in Postgres, so the history table is created
  // (and given its capability column, tagging the legacy rows) under the same lock as every step.
  await knex.transaction(async (trx) => {
    await trx.raw("SELECT pg_advisory_xact_lock(?)", [MIGRATION_LOCK]);
    await trx.raw(
      `CREATE TABLE IF NOT EXISTS ${HISTORY} (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    await trx.raw(`ALTER TABLE ${HISTORY} ADD COLUMN IF NOT EXISTS capability text`);
    const legacy = Object.entries(LEGACY_CAPABILITIES);
    await trx.raw(
      `UPDATE ${HISTORY} h SET capability = l.capability FROM (VALUES ${legacy.map(() => "(?::integer, ?)").join(", ")}) AS l(version, capability) WHERE h.version = l.version AND h.capability IS NULL`,
      legacy.flatMap(([version, capability]) => [Number(version), capability]),
    );
  });
  for (;;) {
    const done = await knex.transaction(async (trx) => {
      await trx.raw("SELECT pg_advisory_xact_lock(?)", [MIGRATION_LOCK]);
      const applied = await trx(HISTORY).select<{ version: number; capability: string | null }[]>(
        "version",
        "capability",
      );
      for (const row of applied) {
        const mine = known.get(row.version);
        if (mine && row.capability !== null && mine.capability !== row.capability)
          throw new Error(
            `migration ${String(row.version)} is ${mine.capability}'s in this code but ${row.capability}'s in the database: two capabilities took the same number`,
          );
        // Untagged rows past the legacy ones were written by no MedMesh that composes capabilities.
        const ours = row.capability === null ? !mine : capabilities.has(row.capability);
        if (ours && !mine) {
          const latest = Math.max(
            0,
            ...steps.filter((m) => m.capability === row.capability).map((m) => m.version),
          );
          throw new SchemaTooNewError(
            `database schema has ${row.capability ?? "an unnamed capability"}'s version ${String(row.version)}, newer than this code's ${String(latest)}: upgrade MedMesh instead of running an older version against this database`,
          );
        }
      }
      const done = new Set(applied.map((r) => r.version));
      const next = steps.filter((m) => !done.has(m.version)).sort((x, y) => x.version - y.version)[0];
      if (!next) return true;
      try {
        await next.up(trx);
      } catch (err) {
        throw new Error(
          `migration ${String(next.version)} (${next.name}) failed: ${(err as Error).message}`,
          { cause: err },
        );
      }
      await trx(HISTORY).insert({ version: next.version, name: next.name, capability: next.capability });
      log?.info({ version: next.version, capability: next.capability, name: next.name }, "applied migration");
      return false;
    });
    if (done) return;
  }
}

/** The composed list, each step once (a capability may come in through two compositions). */
function distinct(migrations: readonly Migration[]): Migration[] {
  const byVersion = new Map<number, Migration>();
  for (const m of migrations) {
    const other = byVersion.get(m.version);
    if (other && other !== m)
      throw new Error(
        `migrations ${other.capability}: ${other.name} and ${m.capability}: ${m.name} both take version ${String(m.version)}`,
      );
    byVersion.set(m.version, m);
  }
  return [...byVersion.values()];
}
