import { spawn, type ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { join, resolve } from "node:path";

// This checkout's Synapse module, ahead of the copy installed in the venv (which several
// checkouts may share): Synapse runs the module source that matches the policy module beside it.
const MODULE_SOURCE = resolve(import.meta.dirname, "../../../policy-module/synapse-module");

export interface SynapseProcess {
  readonly pid: number;
  readonly stdoutLog: string;
  /** Resolves with the exit code when the process ends, whether stopped or crashed. */
  readonly exited: Promise<number | null>;
  stop(): Promise<void>;
}

export interface StartSynapseOptions {
  venv: string;
  homeserverYaml: string;
  workDir: string;
  /** Client API base URL, polled on /health until Synapse answers. */
  clientUrl: string;
  logFile: string;
  /** Further config files read after homeserver.yaml (e.g. the trust list's federation whitelist). */
  extraConfigFiles?: readonly string[];
  /** The Synapse application (a worker's, e.g. synapse.app.generic_worker); the main process by default. */
  app?: string;
  /** Where this process's output goes (default stdout.log in workDir). */
  stdoutLog?: string;
  timeoutMs?: number;
}

/** Starts one Synapse and resolves once its client listener reports healthy. */
export async function startSynapse(opts: StartSynapseOptions): Promise<SynapseProcess> {
  const stdoutLog = opts.stdoutLog ?? join(opts.workDir, "stdout.log");
  const out = createWriteStream(stdoutLog, { flags: "a" });
  await new Promise((r) => out.once("open", r));
  const child = spawn(
    join(opts.venv, "bin", "python"),
    [
      "-m",
      opts.app ?? "synapse.app.homeserver",
      "-c",
      opts.homeserverYaml,
      ...(opts.extraConfigFiles ?? []).flatMap((f) => ["-c", f]),
    ],
    {
      cwd: opts.workDir,
      stdio: ["ignore", out, out],
      env: { ...process.env, PYTHONUNBUFFERED: "1", PYTHONPATH: MODULE_SOURCE },
    },
  );
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      resolve(code);
    }),
  );
  const pid = child.pid;
  if (pid === undefined)
    throw new Error(`could not spawn Synapse from ${opts.venv} (run deploy/install-synapse.sh)`);

  const deadline = Date.now() + (opts.timeoutMs ?? 90_000);
  let exitCode: number | null | undefined;
  void exited.then((c) => {
    exitCode = c;
  });
  for (;;) {
    if (exitCode !== undefined) {
      throw new Error(
        `Synapse (${opts.homeserverYaml}) exited with code ${String(exitCode)} during start-up:\n${await tail(stdoutLog, opts.logFile)}`,
      );
    }
    if (Date.now() > deadline) {
      await stopChild(child, exited);
      throw new Error(
        `Synapse did not become healthy at ${opts.clientUrl} in time:\n${await tail(stdoutLog, opts.logFile)}`,
      );
    }
    try {
      const res = await fetch(new URL("/health", opts.clientUrl), { signal: AbortSignal.timeout(1000) });
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { pid, stdoutLog, exited, stop: () => stopChild(child, exited) };
}

export interface SupervisedSynapse extends SynapseProcess {
  /** Stops and starts Synapse again (to read changed config); `exited` does not fire for it. */
  restart(): Promise<void>;
}

/**
 * A Synapse that can be restarted in place: Synapse reads federation_domain_whitelist only at
 * start-up, so a changed trust list reaches this second line through a restart. `exited`
 * resolves only when Synapse ends on its own or is stopped, never for a restart.
 */
export async function superviseSynapse(
  opts: StartSynapseOptions | (() => Promise<SynapseProcess>),
): Promise<SupervisedSynapse> {
  const start = typeof opts === "function" ? opts : () => startSynapse(opts);
  let current = await start();
  let restarting = false;
  let resolveExited: (code: number | null) => void = () => undefined;
  const exited = new Promise<number | null>((resolve) => {
    resolveExited = resolve;
  });
  const watch = (p: SynapseProcess): void => {
    void p.exited.then((code) => {
      if (!restarting && p === current) resolveExited(code);
    });
  };
  watch(current);
  let queue = Promise.resolve();
  return {
    get pid() {
      return current.pid;
    },
    get stdoutLog() {
      return current.stdoutLog;
    },
    exited,
    restart: () => {
      queue = queue.then(async () => {
        restarting = true;
        try {
          await current.stop();
          current = await start();
          watch(current);
        } finally {
          restarting = false;
        }
      });
      return queue;
    },
    stop: async () => {
      await queue.catch(() => undefined);
      await current.stop();
    },
  };
}

async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

async function tail(...files: string[]): Promise<string> {
  const parts: string[] = [];
  for (const f of files) {
    try {
      const lines = (await readFile(f, "utf8")).trimEnd().split("\n");
      parts.push(`--- ${f} (last lines) ---\n${lines.slice(-25).join("\n")}`);
    } catch {
      // file not written yet
    }
  }
  return parts.join("\n");
}
