/**
 * Synapse workers vs a single Synapse process, same organisation, one run: message sends through
 * the policy proxy, with the CPU and memory each topology used.
 *   MEDMESH_TEST_POSTGRES_URL=… npm run bench:workers    (BENCH_SENDERS=16 BENCH_PER_SENDER=40
 *                                                          BENCH_SEQUENTIAL=200 to change the load)
 * Both topologies run on PostgreSQL (workers need it; the single process uses it too, so the
 * database is not the difference), one after the other on the same machine. The load runs in its
 * own process (bench/workers-load.ts). CPU: user+system seconds of every Synapse process (main and
 * workers), Redis, and this process (the MedMesh services, proxy included) during the load; RSS:
 * their sum after it. Figures are printed, not asserted: the machine is shared.
 */
import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { startTestNetwork, WORKER_TOPOLOGY, type TestNetwork } from "../tests/harness/index.ts";

const SENDERS = Number(process.env.BENCH_SENDERS ?? 16);
const PER_SENDER = Number(process.env.BENCH_PER_SENDER ?? 40);
const SEQUENTIAL = Number(process.env.BENCH_SEQUENTIAL ?? 200);
const POSTGRES: string =
  process.env.MEDMESH_TEST_POSTGRES_URL ??
  (() => {
    throw new Error("set MEDMESH_TEST_POSTGRES_URL (.ci/start-postgres.sh): workers need PostgreSQL");
  })();
const TICKS = 100; // USER_HZ on Linux

interface Usage {
  cpuSeconds: number;
  rssMiB: number;
  processes: number;
}

/** The processes of the organisation: its Synapse processes (by config path), Redis, this one. */
function pidsOf(net: TestNetwork): number[] {
  const org = net.orgs[0];
  if (!org) throw new Error("no organisation");
  const redisPort = org.org.workers ? String(org.org.workers.ports.redis) : undefined;
  const pids = [process.pid];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let cmd: string;
    try {
      cmd = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").join(" ");
    } catch {
      continue; // ended meanwhile
    }
    if (cmd.includes(org.paths.homeserverYaml)) pids.push(Number(entry));
    else if (redisPort && cmd.includes("redis-server") && cmd.includes(`--port ${redisPort}`))
      pids.push(Number(entry));
  }
  return pids;
}

function usage(pids: number[]): Usage {
  let ticks = 0;
  let rss = 0;
  for (const pid of pids) {
    const stat = readFileSync(`/proc/${String(pid)}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    ticks += Number(fields[11]) + Number(fields[12]); // utime, stime
    const status = readFileSync(`/proc/${String(pid)}/status`, "utf8");
    rss += Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0) / 1024;
  }
  return { cpuSeconds: ticks / TICKS, rssMiB: rss, processes: pids.length };
}

const q = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
};

interface Result {
  sendsPerSecond: number;
  latency: number[];
  loaded: number[];
  seconds: number;
  cpu: number;
  rss: number;
  processes: number;
}

async function measure(name: string, workers: boolean): Promise<Result> {
  const net = await startTestNetwork({
    name: `bench-${name}`,
    organisations: 1,
    ...(workers ? { workers: { 0: WORKER_TOPOLOGY } } : { postgresUrl: POSTGRES }),
  });
  try {
    const org = net.orgs[0];
    if (!org) throw new Error("no organisation");
    const senders = [];
    for (let i = 0; i < SENDERS; i++) {
      const user = await net.registerUser(org);
      const res = await fetch(`${org.clientUrl}/_matrix/client/v3/createRoom`, {
        method: "POST",
        headers: { authorization: `Bearer ${user.accessToken}`, "content-type": "application/json" },
        body: "{}",
      });
      const { room_id: roomId } = (await res.json()) as { room_id: string };
      senders.push({ token: user.accessToken, roomId });
    }
    const pids = pidsOf(net);
    const before = usage(pids);
    const load = await promisify(execFile)(
      process.execPath,
      [
        join(import.meta.dirname, "workers-load.ts"),
        JSON.stringify({ url: org.clientUrl, senders, sequential: SEQUENTIAL, perSender: PER_SENDER }),
      ],
      { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
    );
    const after = usage(pids);
    const out = JSON.parse(load.stdout) as Omit<Result, "cpu" | "rss" | "processes">;
    return {
      ...out,
      cpu: after.cpuSeconds - before.cpuSeconds,
      rss: after.rssMiB,
      processes: after.processes,
    };
  } finally {
    await net.stop(false);
  }
}

const single = await measure("single", false);
const workers = await measure("workers", true);
const row = (label: string, a: string, b: string): void => {
  console.log(`${label.padEnd(44)}${a.padStart(16)}${b.padStart(16)}`);
};
row("", "single process", "workers");
row(
  `sends/s, ${String(SENDERS)} senders (${String(SENDERS * PER_SENDER)} sends)`,
  single.sendsPerSecond.toFixed(1),
  workers.sendsPerSecond.toFixed(1),
);
for (const [label, key] of [
  ["one sender", "latency"],
  [`${String(SENDERS)} senders`, "loaded"],
] as const) {
  row(`send latency p50, ${label} (ms)`, q(single[key], 0.5).toFixed(1), q(workers[key], 0.5).toFixed(1));
  row(`send latency p99, ${label} (ms)`, q(single[key], 0.99).toFixed(1), q(workers[key], 0.99).toFixed(1));
}
row("CPU during the load (s, all processes)", single.cpu.toFixed(1), workers.cpu.toFixed(1));
row(
  "CPU per 1000 sends (s)",
  ((single.cpu / (SEQUENTIAL + SENDERS * (PER_SENDER + 5))) * 1000).toFixed(1),
  ((workers.cpu / (SEQUENTIAL + SENDERS * (PER_SENDER + 5))) * 1000).toFixed(1),
);
row("RSS after the load (MiB, all processes)", single.rss.toFixed(0), workers.rss.toFixed(0));
row("processes (Synapse, Redis, MedMesh)", String(single.processes), String(workers.processes));
console.log(
  `workers: ${Object.entries(WORKER_TOPOLOGY)
    .flatMap(([k, v]) => (typeof v === "number" ? [`${String(v)} ${k}`] : []))
    .join(", ")}; both on PostgreSQL; ${String(SEQUENTIAL)} sequential sends for the one-sender figures`,
);
