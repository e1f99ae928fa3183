import { spawn, type ChildProcess } from "node:child_process";
import { openSync } from "node:fs";
import { join } from "node:path";
import { REPO_ROOT } from "@medmesh/deploy";
import { waitUntil } from "./wait.ts";

const MAIN = { bridge: "bridge/src/main.ts", "policy-module": "policy-module/src/main.ts" } as const;

/**
 * A MedMesh service as its own process, as a supervisor (systemd, compose) runs it: started from
 * its generated config, killed with SIGKILL in the middle of work, started again. Each start logs
 * to `<dataDir>/<name>-process-<n>.log` (kept with a failed test run).
 */
export function serviceProcess(o: {
  service: keyof typeof MAIN;
  /** Names its log files (default: the service); replicas of one service need one each. */
  name?: string;
  config: () => string;
  dataDir: () => string;
  /** When a start counts as done (the service answers). */
  ready: () => Promise<boolean>;
  readyTimeoutMs?: number;
}) {
  let child: ChildProcess | undefined;
  let starts = 0;
  const stop = (signal: "SIGKILL" | "SIGTERM"): Promise<void> => {
    const running = child;
    // Exited, or killed by a signal (then exitCode stays null): no "exit" event will come again.
    if (!running || running.exitCode !== null || running.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      running.once("exit", () => {
        resolve();
      });
      running.kill(signal);
    });
  };
  return {
    start: async (): Promise<void> => {
      const log = openSync(join(o.dataDir(), `${o.name ?? o.service}-process-${String(++starts)}.log`), "a");
      const started = spawn(process.execPath, [MAIN[o.service], "--config", o.config()], {
        cwd: REPO_ROOT,
        stdio: ["ignore", log, log],
      });
      child = started;
      await waitUntil(
        async () => {
          if (started.exitCode !== null)
            throw new Error(`${o.service} exited with ${String(started.exitCode)}`);
          return o.ready().catch(() => false);
        },
        `the ${o.service} process answers`,
        o.readyTimeoutMs ?? 60_000,
      );
    },
    stop,
    kill: () => stop("SIGKILL"),
    /** Pauses (SIGSTOP) or resumes (SIGCONT) the running process: a hung host, not a dead one. */
    signal: (signal: "SIGSTOP" | "SIGCONT"): void => {
      child?.kill(signal);
    },
  };
}

/** Whether a URL answers 2xx. */
export const answers = (url: string): Promise<boolean> =>
  fetch(url).then(
    (r) => r.ok,
    () => false,
  );

/** Kills a service `times` times at random moments 0.5–1.5 s apart, starting it again each time. */
export async function killRepeatedly(
  times: number,
  service: { kill(): Promise<void>; start(): Promise<void> },
): Promise<void> {
  for (let i = 0; i < times; i++) {
    await new Promise((r) => setTimeout(r, 500 + Math.random() * 1000));
    await service.kill();
    await service.start();
  }
}
