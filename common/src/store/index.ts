export { StoreConfigSchema, type StoreConfig } from "./config.ts";
export { createKnex } from "./knex.ts";
export { migrate, SchemaTooNewError, type Migration } from "./migrations.ts";
export {
  createStore,
  KnexStore,
  MIGRATIONS,
  type Store,
  type LeaseStore,
  type TransactionStore,
  type DocumentStore,
} from "./store.ts";
