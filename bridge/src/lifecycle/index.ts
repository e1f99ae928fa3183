export { removedCounter, type Removed } from "./metrics.ts";
export { redactionPurge, type RedactionPurge } from "./redactions.ts";
export { createPruner, type Pruner, type PruneResult } from "./pruner.ts";
