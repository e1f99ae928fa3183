import { DatabaseSync } from "node:sqlite";
import type { RunningOrganisation } from "@medmesh/deploy";
import knexFactory from "knex";

/**
 * An organisation's Synapse database (SQLite or PostgreSQL), opened directly, for tests that check
 * what Synapse stored or must set what only Synapse's own tables hold. SQL with `?` placeholders
 * runs on both.
 */
export interface SynapseDb {
  all<T>(sql: string, params?: readonly (string | number)[]): Promise<T[]>;
  run(sql: string, params?: readonly (string | number)[]): Promise<void>;
  close(): Promise<void>;
}

export function openSynapseDb(o: RunningOrganisation): SynapseDb {
  const database = o.org.database;
  if (database.type === "postgres") {
    const pg = knexFactory({
      client: "pg",
      connection: {
        host: database.host,
        port: database.port,
        user: database.user,
        ...(database.password === undefined ? {} : { password: database.password }),
        database: database.database,
      },
      pool: { min: 0, max: 1 },
    });
    return {
      all: async <T>(sql: string, params: readonly (string | number)[] = []) =>
        (await pg.raw<{ rows: T[] }>(sql, [...params])).rows,
      run: async (sql, params = []) => {
        await pg.raw(sql, [...params]);
      },
      close: () => pg.destroy(),
    };
  }
  // Synapse keeps writing while a test reads or writes: wait for its locks rather than fail.
  const db = new DatabaseSync(o.paths.sqliteDb, { timeout: 10_000 });
  return {
    all: <T>(sql: string, params: readonly (string | number)[] = []) =>
      Promise.resolve(db.prepare(sql).all(...params) as T[]),
    run: (sql, params = []) => {
      db.prepare(sql).run(...params);
      return Promise.resolve();
    },
    close: () => {
      db.close();
      return Promise.resolve();
    },
  };
}

/** Runs `fn` with the organisation's Synapse database open, and closes it. */
export async function withSynapseDb<T>(
  o: RunningOrganisation,
  fn: (db: SynapseDb) => Promise<T>,
): Promise<T> {
  const db = openSynapseDb(o);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}
