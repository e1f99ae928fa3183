import type { Reporter, TestModule } from "vitest/node";

/**
 * Prints the plain `N passed, N failed` line that CI reads to know tests ran. Vitest's own
 * summary ("Tests 3 passed (3)") is for people; this line is for machines.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: readonly TestModule[], unhandledErrors: readonly unknown[]): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const mod of testModules) {
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === "passed") passed++;
        else if (state === "failed") failed++;
        else skipped++;
      }
      // A module that failed to load (syntax error, failing beforeAll) has no test results of its own.
      if (
        mod.state() === "failed" &&
        [...mod.children.allTests()].every((t) => t.result().state !== "failed")
      ) {
        failed++;
      }
    }
    failed += unhandledErrors.length;
    process.stdout.write(`\n${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}\n`);
  }
}
