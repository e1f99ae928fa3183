import type { Knex } from "knex";
import type { Logger } from "pino";

export interface Migration {
  version: number;
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
 * Applies pending migrations, each in its own transaction together with its history row, under an
 * advisory lock so concurrent starters migrate once. Refuses a database that is newer than the code.
 */
export async function migrate(knex: Knex, migrations: readonly Migration[], log?: Logger): Promise<void> {
  const latest = migrations.reduce((max, m) => Math.max(max, m.version), 0);
  // Even "IF NOT EXISTS" races between connections in Postgres, so the history table is created
  // under the same lock as every step.
  await knex.transaction(async (trx) => {
    await trx.raw("SELECT pg_advisory_xact_lock(?)", [MIGRATION_LOCK]);
    await trx.raw(
      `CREATE TABLE IF NOT EXISTS ${HISTORY} (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`,
    );
  });
  for (;;) {
    const done = await knex.transaction(async (trx) => {
      await trx.raw("SELECT pg_advisory_xact_lock(?)", [MIGRATION_LOCK]);
      const row = (await trx(HISTORY).max({ v: "version" }).first()) as { v: number | null } | undefined;
      const current = row?.v ?? 0;
      if (current > latest) {
        throw new SchemaTooNewError(
          `database schema is version ${String(current)}, newer than this code's ${String(latest)}: upgrade MedMesh instead of running an older version against this database`,
        );
      }
      const next = migrations.filter((m) => m.version > current).sort((x, y) => x.version - y.version)[0];
      if (!next) return true;
      try {
        await next.up(trx);
      } catch (err) {
        throw new Error(
          `migration ${String(next.version)} (${next.name}) failed: ${(err as Error).message}`,
          { cause: err },
        );
      }
      await trx(HISTORY).insert({ version: next.version, name: next.name });
      log?.info({ version: next.version, name: next.name }, "applied migration");
      return false;
    });
    if (done) return;
  }
}
