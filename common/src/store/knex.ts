import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { readFile } from "node:fs/promises";
import knexFactory, { type Knex } from "knex";
import type { StoreConfig } from "./config.ts";

export async function createKnex(config: StoreConfig): Promise<Knex> {
  if (config.type === "postgres") {
    return knexFactory({
      client: "pg",
      connection: {
        connectionString: config.url,
        ...(config.password === undefined ? {} : { password: config.password }),
      },
      pool: { min: 0, max: config.pool_max },
    });
  }
  if (config.data_dir !== "memory://") {
    await mkdir(config.data_dir, { recursive: true });
    claimDataDir(config.data_dir);
  }
  // Loaded only for an embedded store: a service on PostgreSQL does not carry PGlite in memory.
  const [{ PGlite }, { default: ClientPgLite }] = await Promise.all([
    import("@electric-sql/pglite"),
    import("knex-pglite"),
  ]);
  const pglite = new PGlite(config.data_dir === "memory://" ? undefined : config.data_dir, {
    ...(await compiledPglite()),
    startParams: [...PGlite.defaultStartParams, ...PGLITE_SETTINGS.flatMap((s) => ["-c", s])],
  });
  // knex-pglite takes a ready instance this way (its typings don't say so) and closes it on destroy().
  const connection = { pglite } as unknown as Knex.StaticConnectionConfig;
  const knex = knexFactory({ client: ClientPgLite, dialect: "postgres", connection });
  embedded.set(knex, pglite);
  return knex;
}

/**
 * PGlite starts PostgreSQL with shared_buffers = 128MB, and PostgreSQL touches the whole buffer pool
 * when it starts: ~200 MiB resident per instance at idle. 16MB (2,048 pages; PostgreSQL's own floor
 * for small machines is 128kB) holds a demo organisation's working set, and brings an instance to
 * ~80 MiB (docs/stores.md, `npm run bench`). The WASM memory itself cannot start below the 128 MiB
 * the module declares, but untouched pages of it are not resident.
 */
export const PGLITE_SETTINGS = ["shared_buffers=16MB"] as const;

/** The embedded database behind a knex made by createKnex (its LISTEN/NOTIFY is the instance's own). */
const embedded = new WeakMap<
  Knex,
  { listen(channel: string, cb: (payload: string) => void): Promise<unknown> }
>();
export const embeddedDatabaseOf = (knex: Knex) => embedded.get(knex);

interface CompiledPglite {
  pgliteWasmModule: WebAssembly.Module;
  initdbWasmModule: WebAssembly.Module;
}
let compiled: Promise<CompiledPglite> | undefined;

/**
 * Each PGlite instance would compile its own copy of Postgres' WASM (~200 MiB and ~1 s each); a
 * `npm start` network runs four. Compiled modules are immutable code, so one compilation is shared
 * by every instance in the process — a cache, not shared state.
 */
function compiledPglite(): Promise<CompiledPglite> {
  compiled ??= (async () => {
    const dist = new URL(".", import.meta.resolve("@electric-sql/pglite"));
    const [pglite, initdb] = await Promise.all([
      readFile(new URL("pglite.wasm", dist)),
      readFile(new URL("initdb.wasm", dist)),
    ]);
    const [pgliteWasmModule, initdbWasmModule] = await Promise.all([
      WebAssembly.compile(pglite),
      WebAssembly.compile(initdb),
    ]);
    return { pgliteWasmModule, initdbWasmModule };
  })();
  return compiled;
}

/**
 * PGlite is one process's embedded database: two processes opening the same folder would each
 * keep their own copy in memory and overwrite each other's writes. A pid file refuses a second
 * process while the first lives; a stale one (crashed owner) is taken over.
 */
function claimDataDir(dir: string): void {
  const lock = join(dir, "medmesh.pid");
  let owner: number | undefined;
  try {
    owner = Number(readFileSync(lock, "utf8").trim());
  } catch {
    owner = undefined;
  }
  if (owner !== undefined && owner !== process.pid && Number.isInteger(owner) && isAlive(owner)) {
    throw new Error(
      `the embedded store ${dir} is in use by process ${String(owner)}; run one instance per PGlite folder, or use PostgreSQL for several`,
    );
  }
  writeFileSync(lock, `${String(process.pid)}\n`);
}

/** Removes this process's claim on a PGlite folder (after its instance is closed). */
export function releaseDataDir(dir: string): void {
  if (dir === "memory://") return;
  const lock = join(dir, "medmesh.pid");
  try {
    if (Number(readFileSync(lock, "utf8").trim()) === process.pid) rmSync(lock);
  } catch {
    // never claimed, or already gone
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
