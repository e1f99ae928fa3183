/**
 * `npm test` (docs/testing.md): the `unit` and the `e2e` projects in two vitest processes side by
 * side, each line prefixed with its project, then one plain `N passed, N failed` line for CI.
 * vitest runs a project whose files go one at a time (e2e) only after the parallel ones, never
 * beside them, so in one process the unit tests' minutes add to the end-to-end ones. With
 * arguments (`npm test -- tests/e2e/federation.test.ts`) it is one plain `vitest run` with them.
 */
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

const VITEST = new URL("../node_modules/vitest/vitest.mjs", import.meta.url).pathname;
const SUMMARY = /^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?$/;
const ANSI = /\x1b\[[0-9;]*m/g; // eslint-disable-line no-control-regex

const children: ReturnType<typeof spawn>[] = [];
// Stopped (Ctrl-C, a CI timeout): the lanes stop too, and with them their homeservers.
for (const signal of ["SIGINT", "SIGTERM"] as const)
  process.on(signal, () => {
    for (const c of children) c.kill(signal);
  });

interface Lane {
  code: number;
  summary?: { passed: number; failed: number; skipped: number };
}

function lane(project: string): Promise<Lane> {
  const child = spawn(process.execPath, [VITEST, "run", "--project", project], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  const result: Lane = { code: 1 };
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (line) => {
      const m = SUMMARY.exec(line.replace(ANSI, "").trim());
      if (m) result.summary = { passed: Number(m[1]), failed: Number(m[2]), skipped: Number(m[3] ?? 0) };
      else process.stdout.write(`[${project}] ${line}\n`);
    });
  }
  return new Promise((resolve) => {
    child.on("close", (code) => {
      result.code = code ?? 1;
      resolve(result);
    });
  });
}

const args = process.argv.slice(2);
if (args.length > 0) {
  const child = spawn(process.execPath, [VITEST, "run", ...args], { stdio: "inherit" });
  child.on("close", (code) => process.exit(code ?? 1));
} else {
  const projects = ["unit", "e2e"];
  const lanes = await Promise.all(projects.map(lane));
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  for (const [i, l] of lanes.entries()) {
    passed += l.summary?.passed ?? 0;
    failed += l.summary?.failed ?? 0;
    skipped += l.summary?.skipped ?? 0;
    // A lane that ended without its summary (crashed, killed) or failed with none counted fails once.
    if (l.code !== 0 && !l.summary?.failed) {
      process.stdout.write(
        `[${String(projects[i])}] ended with exit ${String(l.code)} and no failed test counted\n`,
      );
      failed++;
    }
  }
  process.stdout.write(
    `\n${String(passed)} passed, ${String(failed)} failed${skipped ? `, ${String(skipped)} skipped` : ""}\n`,
  );
  process.exit(failed > 0 ? 1 : 0);
}
