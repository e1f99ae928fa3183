/**
 * Start-up time and idle memory of a two-organisation network, side by side with Synapse alone.
 *   npm run bench
 * Phase 1 starts only the two Synapses (same generated config); phase 2 starts the full MedMesh
 * network (Synapses + policy-module + bridge per organisation) through startNetwork, as `npm start`
 * does. Figures are printed, not asserted: the machine is shared, ratios are what hold.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseConfig } from "@medmesh/common";
import { DeploymentSchema, generateNetwork, installSynapse, REPO_ROOT, startNetwork } from "@medmesh/deploy";
import { startSynapse } from "../deploy/src/synapse/process.ts";
import { freeOrganisationPorts } from "../tests/harness/ports.ts";

const IDLE_MS = Number(process.env.BENCH_IDLE_MS ?? 15_000);

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${String(pid)}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  return kb / 1024;
}
const mib = (n: number): string => `${n.toFixed(0)} MiB`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const dataDir = await mkdtemp(join(tmpdir(), "medmesh-bench-"));
const ports = [await freeOrganisationPorts(), await freeOrganisationPorts()];
const deployment = parseConfig(
  DeploymentSchema,
  {
    data_dir: dataDir,
    organisations: ["a", "b"].map((x, i) => ({
      id: `org-${x}`,
      name: `Org ${x.toUpperCase()}`,
      ports: ports[i],
    })),
  },
  "bench",
);
const venv = resolve(REPO_ROOT, deployment.synapse_venv);
await installSynapse(venv);

try {
  // Phase 1: Synapse alone. The first start creates the databases; measure the second.
  const generated = await generateNetwork(deployment, REPO_ROOT);
  const startAlone = async () =>
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
  await Promise.all((await startAlone()).map((s) => s.stop()));
  let t = Date.now();
  const alone = await startAlone();
  const aloneReadyMs = Date.now() - t;
  await sleep(IDLE_MS);
  const aloneRss = alone.map((s) => rssMiB(s.pid));
  await Promise.all(alone.map((s) => s.stop()));

  // Phase 2: the MedMesh network on the same data.
  const runnerBefore = process.memoryUsage().rss / 1024 / 1024;
  t = Date.now();
  const network = await startNetwork(deployment, { baseDir: REPO_ROOT });
  const networkReadyMs = Date.now() - t;
  await sleep(IDLE_MS);
  const synapseRss = network.organisations.map((o) => rssMiB(o.synapse.pid));
  const runnerRss = rssMiB(process.pid);
  await network.stop();

  const rows: [string, string, string][] = [
    ["", "Synapse alone", "MedMesh network"],
    ["ready (2 orgs, warm start)", `${String(aloneReadyMs)} ms`, `${String(networkReadyMs)} ms`],
    ...aloneRss.map((r, i): [string, string, string] => [
      `Synapse org ${"ab"[i] ?? ""} RSS (idle)`,
      mib(r),
      mib(synapseRss[i] ?? NaN),
    ]),
    ["MedMesh Node process RSS (idle; 2× policy-module + 2× bridge)", "-", mib(runnerRss)],
    ["  of which Node baseline before services", "-", mib(runnerBefore)],
    [
      "total RSS",
      mib(aloneRss.reduce((a, b) => a + b, 0)),
      mib(synapseRss.reduce((a, b) => a + b, 0) + runnerRss),
    ],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  for (const [label, a, b] of rows)
    console.log(`${label.padEnd(width)}  ${a.padStart(14)}  ${b.padStart(16)}`);
  console.log(
    `(idle = ${String(IDLE_MS)} ms after ready; Synapse ${readFileSync(join(REPO_ROOT, "deploy/SYNAPSE_VERSION"), "utf8").trim()}, SQLite; services on PGlite)`,
  );
} finally {
  await rm(dataDir, { recursive: true, force: true });
}
