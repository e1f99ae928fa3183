import { defineConfig } from "vitest/config";

// Unit tests live next to their code; integration/e2e tests boot real Synapse homeservers
// (tests/harness) and therefore run one file at a time with long timeouts.
export default defineConfig({
  test: {
    reporters: ["default", "./tests/summary-reporter.ts"],
    // matrix-js-sdk is chatty; show console output only for failing tests.
    silent: "passed-only",
    projects: [
      {
        test: {
          name: "unit",
          include: ["{common,policy-module,bridge,deploy,tim-driver}/src/**/*.test.ts"],
          testTimeout: 30_000,
          // Opening an embedded store (PGlite) takes seconds on a busy machine.
          hookTimeout: 60_000,
        },
      },
      {
        test: {
          name: "e2e",
          include: ["tests/**/*.test.ts"],
          testTimeout: 180_000,
          hookTimeout: 240_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
