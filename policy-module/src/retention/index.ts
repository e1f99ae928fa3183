export { RETENTION_MIGRATIONS } from "./migrations.ts";
export { RetentionConfigSchema, type RetentionConfig } from "./config.ts";
export {
  retentionIndex,
  mediaOf,
  MESSAGE_TYPES,
  type RetentionIndex,
  type IndexedEvent,
} from "./event-index.ts";
export { createSweeper, redactionTxnId, SWEEP_JOB, type SweepResult, type Sweeper } from "./sweeper.ts";
export { startRetention, RETENTION_EVENT, type Retention } from "./service.ts";
export { sweepHistory, type SweepHistory, type SweepRecord } from "./sweep-history.ts";
