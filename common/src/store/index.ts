export { StoreConfigSchema, type StoreConfig } from "./config.ts";
export { createKnex } from "./knex.ts";
export { migrate, SchemaTooNewError, LEGACY_CAPABILITIES, type Migration } from "./migrations.ts";
export { type NotificationStore } from "./notifications.ts";
export { COMMON_MIGRATIONS } from "./common-migrations.ts";
export {
  createStore,
  KnexStore,
  type CreateStoreOptions,
  type Store,
  type LeaseStore,
  type TransactionStore,
  type DocumentStore,
} from "./store.ts";
