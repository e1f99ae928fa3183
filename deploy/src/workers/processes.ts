import { spawn } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir } from "node:fs/promises";
import { connect } from "node:net";
import { join } from "node:path";
import { startSynapse, type StartSynapseOptions, type SynapseProcess } from "../synapse/process.ts";
import { workerList, type WorkersConfig } from "../config/workers-schema.ts";
import type { GeneratedWorkers } from "./generate-workers.ts";

/** Every port a worker topology listens on, named as the port check reports them. */
export function workerPorts(w: WorkersConfig): Record<string, number> {
  return {
    "workers.ports.replication": w.ports.replication,
    "workers.ports.redis": w.ports.redis,
    ...Object.fromEntries(workerList(w).map((x) => [`workers (${x.name})`, x.port])),
  };
}

export interface RedisProcess {
  readonly pid: number;
  stop(): Promise<void>;
}

/**
 * Debian's redis-server on a private loopback port, like the test PostgreSQL: no persistence (it
 * only carries replication between live processes), no other listener.
 */
export async function startRedis(r: GeneratedWorkers["processes"]["redis"]): Promise<RedisProcess> {
  await mkdir(r.dir, { recursive: true });
  const log = createWriteStream(join(r.dir, "redis.log"), { flags: "a" });
  await new Promise((resolve) => log.once("open", resolve));
  const bin = process.env.MEDMESH_REDIS_SERVER ?? "redis-server";
  const child = spawn(
    bin,
    [
      "--port",
      String(r.port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
      "--dir",
      r.dir,
      "--protected-mode",
      "yes",
    ],
    { stdio: ["ignore", log, log] },
  );
  const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
  const failed = new Promise<never>((_, reject) => {
    child.once("error", (err) => {
      reject(new Error(`could not start ${bin} (Debian: apt-get install redis-server): ${err.message}`));
    });
    void exited.then((code) => {
      reject(
        new Error(`redis-server exited with code ${String(code)} during start-up (see ${r.dir}/redis.log)`),
      );
    });
  });
  const deadline = Date.now() + 15_000;
  for (;;) {
    const up = await Promise.race([ping(r.port), failed]);
    if (up) break;
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`redis-server did not answer on port ${String(r.port)} in time`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  failed.catch(() => undefined);
  return {
    pid: child.pid ?? 0,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      await exited;
    },
  };
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let answer = "";
    socket.setTimeout(1000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => {
      resolve(false);
    });
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (d) => {
      answer += d.toString();
      if (answer.includes("\r\n")) {
        socket.end();
        resolve(answer.startsWith("+PONG"));
      }
    });
  });
}

/**
 * The main process and then every worker, as one process for the runner: `pid` is the main
 * process's, `exited` resolves when any of them ends, `stop` stops the workers, then the main.
 */
export async function startSynapseWithWorkers(
  main: StartSynapseOptions,
  workers: GeneratedWorkers["processes"]["workers"],
): Promise<SynapseProcess> {
  const first = await startSynapse(main);
  const started: SynapseProcess[] = [];
  const stopAll = async () => {
    await Promise.allSettled(started.map((p) => p.stop()));
    await first.stop();
  };
  try {
    // In parallel: each worker only needs the main process's replication listener, up by now.
    const results = await Promise.allSettled(
      workers.map(async (w) => {
        const p = await startSynapse({
          ...main,
          app: w.app,
          extraConfigFiles: [...(main.extraConfigFiles ?? []), w.configFile],
          clientUrl: w.url,
          logFile: w.logFile,
          stdoutLog: w.logFile.replace(/\.log$/, ".stdout.log"),
        });
        started.push(p);
        return p;
      }),
    );
    const failed = results.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  } catch (err) {
    await stopAll();
    throw err;
  }
  return {
    pid: first.pid,
    stdoutLog: first.stdoutLog,
    exited: Promise.race([first.exited, ...started.map((p) => p.exited)]),
    stop: stopAll,
  };
}
