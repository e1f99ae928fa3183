import { useTestNetwork, WORKER_TOPOLOGY } from "../harness/index.ts";
import { retentionSuite } from "./retention.suite.ts";

// The retention suite, unchanged, with organisation A on Synapse workers + Redis + PostgreSQL
// (the sweep's media deletion goes to the media repository worker).
retentionSuite(
  useTestNetwork({ name: "retention-workers", organisations: 2, workers: { 0: WORKER_TOPOLOGY } }),
  "30-day retention, with organisation A on Synapse workers",
);
