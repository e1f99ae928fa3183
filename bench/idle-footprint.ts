/**
 * Start-up time and idle memory of a two-organisation network, side by side with Synapse alone.
 *   npm run bench        (MEDMESH_TEST_POSTGRES_URL set: adds a column with the stores on PostgreSQL)
 * Columns, in the order they run: the two Synapses alone; the MedMesh network with its services'
 * stores on PostgreSQL; the MedMesh network as `npm start` runs it (stores on embedded PGlite).
 * Synapse uses SQLite throughout, on the same data. Figures are printed, not asserted: the machine
 * is shared, ratios are what hold.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import knexFactory from "knex";
import { parseConfig } from "@medmesh/common";
import {
  DeploymentSchema,
  generateNetwork,
  installSynapse,
  REPO_ROOT,
  startNetwork,
  type DeploymentConfig,
} from "@medmesh/deploy";
import { startSynapse } from "../deploy/src/synapse/process.ts";
import { freeOrganisationPorts } from "../tests/harness/ports.ts";

const IDLE_MS = Number(process.env.BENCH_IDLE_MS ?? 15_000);
const POSTGRES = process.env.MEDMESH_TEST_POSTGRES_URL;

interface Figures {
  readyMs: number;
  synapseRss: number[];
  /** RSS of this Node process (all MedMesh services of both organisations), if they ran. */
  servicesRss?: number;
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${String(pid)}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN) / 1024;
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

const dataDir = await mkdtemp(join(tmpdir(), "medmesh-bench-"));
const ports = [await freeOrganisationPorts(), await freeOrganisationPorts()];
const deploymentWith = (store?: (i: number) => Record<string, unknown>): DeploymentConfig =>
  parseConfig(
    DeploymentSchema,
    {
      data_dir: dataDir,
      organisations: ["a", "b"].map((x, i) => ({
        id: `org-${x}`,
        name: `Org ${x.toUpperCase()}`,
        ports: ports[i],
        ...store?.(i),
      })),
    },
    "bench",
  );
const deployment = deploymentWith();
const venv = resolve(REPO_ROOT, deployment.synapse_venv);
await installSynapse(venv);
const baselineRss = rssMiB(process.pid);

async function synapseAlone(): Promise<Figures> {
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
  const synapseRss = running.map((s) => rssMiB(s.pid));
  await Promise.all(running.map((s) => s.stop()));
  return { readyMs, synapseRss };
}

async function medmesh(config: DeploymentConfig): Promise<Figures> {
  await startNetwork(config, { baseDir: REPO_ROOT }).then((n) => n.stop()); // initialise stores
  const t = Date.now();
  const network = await startNetwork(config, { baseDir: REPO_ROOT });
  const readyMs = Date.now() - t;
  await sleep(IDLE_MS);
  const figures = {
    readyMs,
    synapseRss: network.organisations.map((o) => rssMiB(o.synapse.pid)),
    servicesRss: rssMiB(process.pid),
  };
  await network.stop();
  return figures;
}

async function withPostgresStores(url: string): Promise<Figures> {
  const admin = knexFactory({ client: "pg", connection: url, pool: { min: 0, max: 1 } });
  const names = ["a", "b"].map((x) => `medmesh_bench_${x}_${randomBytes(4).toString("hex")}`);
  try {
    for (const n of names) await admin.raw(`CREATE DATABASE ${n}`);
    return await medmesh(
      deploymentWith((i) => {
        const db = new URL(url);
        db.pathname = `/${names[i] ?? ""}`;
        return { store: { type: "postgres", url: db.toString() } };
      }),
    );
  } finally {
    for (const n of names) await admin.raw(`DROP DATABASE IF EXISTS ${n} WITH (FORCE)`);
    await admin.destroy();
  }
}

try {
  const columns: [string, Figures][] = [["Synapse alone", await synapseAlone()]];
  // PostgreSQL first: once PGlite has run in this process, its memory stays in the RSS.
  if (POSTGRES) columns.push(["MedMesh, PG stores", await withPostgresStores(POSTGRES)]);
  columns.push(["MedMesh (npm start)", await medmesh(deployment)]);

  const mib = (n: number | undefined): string => (n === undefined ? "-" : `${n.toFixed(0)} MiB`);
  const rows: [string, ...string[]][] = [
    ["", ...columns.map(([name]) => name)],
    ["ready, 2 orgs (warm start)", ...columns.map(([, f]) => `${String(f.readyMs)} ms`)],
    ["Synapse org A RSS (idle)", ...columns.map(([, f]) => mib(f.synapseRss[0]))],
    ["Synapse org B RSS (idle)", ...columns.map(([, f]) => mib(f.synapseRss[1]))],
    ["Node process: 2× policy-module + 2× bridge", ...columns.map(([, f]) => mib(f.servicesRss))],
    [
      "  of which Node baseline",
      ...columns.map(([, f]) => (f.servicesRss === undefined ? "-" : mib(baselineRss))),
    ],
    ["total RSS", ...columns.map(([, f]) => mib(sum(f.synapseRss) + (f.servicesRss ?? 0)))],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  for (const [label, ...cells] of rows)
    console.log(`${label.padEnd(width)}${cells.map((c) => c.padStart(22)).join("")}`);
  const version = readFileSync(join(REPO_ROOT, "deploy/SYNAPSE_VERSION"), "utf8").trim();
  console.log(
    `(idle = ${String(IDLE_MS)} ms after ready; Synapse ${version} on SQLite; ${POSTGRES ? "" : "set MEDMESH_TEST_POSTGRES_URL for the PG column; "}node ${process.version})`,
  );
} finally {
  await rm(dataDir, { recursive: true, force: true });
}
