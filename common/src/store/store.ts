import type { Knex } from "knex";
import type { Logger } from "pino";
import type { StoreConfig } from "./config.ts";
import { createKnex, embeddedDatabaseOf, releaseDataDir } from "./knex.ts";
import { createNotifications, type NotificationStore } from "./notifications.ts";
import { COMMON_MIGRATIONS } from "./common-migrations.ts";
import { migrate, type Migration } from "./migrations.ts";

export interface LeaseStore {
  /** Leader lock for scheduled jobs across instances: true if `holder` now holds `name` until now + ttl. */
  tryAcquire(name: string, holder: string, ttlMs: number, now?: Date): Promise<boolean>;
  release(name: string, holder: string): Promise<void>;
}

export interface TransactionStore {
  markProcessed(service: string, txnId: string, now?: Date): Promise<boolean>;
  isProcessed(service: string, txnId: string): Promise<boolean>;
}

/** Small named documents a service must keep across restarts (e.g. the last good trust list). */
export interface DocumentStore {
  get(name: string): Promise<string | undefined>;
  put(name: string, value: string, now?: Date): Promise<void>;
}

export interface Store {
  /** For capability repositories (identity, bridge, …) over the tables their migrations made. */
  readonly knex: Knex;
  readonly leases: LeaseStore;
  readonly transactions: TransactionStore;
  readonly documents: DocumentStore;
  /** LISTEN/NOTIFY between the instances on this database (and within this one). */
  readonly notifications: NotificationStore;
  health(): Promise<void>;
  close(): Promise<void>;
}

export class KnexStore implements Store {
  readonly knex: Knex;
  readonly notifications: NotificationStore;
  private readonly onClose: (() => void) | undefined;
  constructor(knex: Knex, notifications: NotificationStore, onClose?: () => void) {
    this.knex = knex;
    this.notifications = notifications;
    this.onClose = onClose;
  }

  readonly leases: LeaseStore = {
    tryAcquire: async (name, holder, ttlMs, now = new Date()) => {
      const expires = new Date(now.getTime() + ttlMs);
      // One statement: insert, or take over when expired or already ours. Postgres row locking on
      // the conflicting row makes concurrent callers serialise, so exactly one wins.
      const rows = await this.knex.raw<{ rows: { holder: string }[] }>(
        `INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
         WHERE leases.holder = EXCLUDED.holder OR leases.expires_at <= ?
         RETURNING holder`,
        [name, holder, expires, now],
      );
      return rows.rows.length === 1;
    },
    release: async (name, holder) => {
      await this.knex("leases").where({ name, holder }).delete();
    },
  };

  readonly transactions: TransactionStore = {
    markProcessed: async (service, txnId, now = new Date()) => {
      const rows = await this.knex("appservice_transactions")
        .insert({ service, txn_id: txnId, processed_at: now })
        .onConflict(["service", "txn_id"])
        .ignore()
        .returning("txn_id");
      return rows.length === 1;
    },
    isProcessed: async (service, txnId) => {
      const row: unknown = await this.knex("appservice_transactions")
        .where({ service, txn_id: txnId })
        .first();
      return row !== undefined;
    },
  };

  readonly documents: DocumentStore = {
    get: async (name) => {
      const row: { value: string } | undefined = await this.knex("documents").where({ name }).first("value");
      return row?.value;
    },
    put: async (name, value, now = new Date()) => {
      await this.knex("documents")
        .insert({ name, value, updated_at: now })
        .onConflict("name")
        .merge(["value", "updated_at"]);
    },
  };

  async health(): Promise<void> {
    await this.knex.raw("SELECT 1");
  }

  async close(): Promise<void> {
    await this.notifications.close();
    await this.knex.destroy();
    this.onClose?.();
  }
}

export interface CreateStoreOptions {
  /**
   * The capabilities' migrations the service runs (identity, retention, bridge, …); the store's
   * own tables and the audit log's (COMMON_MIGRATIONS) are always migrated too.
   */
  migrations?: readonly Migration[];
  log?: Logger | undefined;
}

export async function createStore(config: StoreConfig, opts: CreateStoreOptions = {}): Promise<KnexStore> {
  const knex = await createKnex(config);
  // A closed embedded store hands its folder back at once (another process may open it).
  const release =
    config.type === "pglite"
      ? () => {
          releaseDataDir(config.data_dir);
        }
      : undefined;
  try {
    await migrate(knex, [...COMMON_MIGRATIONS, ...(opts.migrations ?? [])], opts.log);
  } catch (err) {
    await knex.destroy();
    release?.();
    throw err;
  }
  return new KnexStore(knex, createNotifications(config, knex, embeddedDatabaseOf(knex), opts.log), release);
}
