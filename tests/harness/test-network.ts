import { randomBytes } from "node:crypto";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import knexFactory from "knex";
import type { MatrixClient } from "matrix-js-sdk";
import { parseConfig } from "@medmesh/common";
import {
  DeploymentSchema,
  REPO_ROOT,
  startNetwork,
  type RunningNetwork,
  type RunningOrganisation,
  WorkersSchema,
  workerList,
} from "@medmesh/deploy";
import { registerWithSharedSecret } from "@medmesh/deploy";
import { UNKNOWN_ENDPOINT_LOG } from "@medmesh/policy-module";
import { startClient, type ClientUser } from "./clients.ts";
import { freeOrganisationPorts, freeWorkerPorts, type OrganisationPorts } from "./ports.ts";

export const TEST_RUNS_DIR = join(REPO_ROOT, ".medmesh", "test-runs");

export interface TestUser extends ClientUser {
  localpart: string;
  password: string;
  org: RunningOrganisation;
}

export interface TestNetwork {
  readonly network: RunningNetwork;
  readonly orgs: readonly RunningOrganisation[];
  readonly dataDir: string;
  /** Registers a fresh user on the organisation (shared-secret admin API). */
  registerUser(org: RunningOrganisation, localpart?: string): Promise<TestUser>;
  /** A started matrix-js-sdk client with Rust crypto, stopped by `stop()`. */
  client(user: TestUser): Promise<MatrixClient>;
  /**
   * Stops everything; keeps the data folder (logs, databases) when `keep` is true. Rejects when the
   * proxy refused a request as an unknown endpoint (unless `allowUnknownEndpoints`).
   */
  stop(keep: boolean): Promise<void>;
}

export interface TestNetworkOptions {
  /** Test name, used for the run folder. */
  name: string;
  organisations?: number;
  /**
   * A PostgreSQL server URL: each organisation's Synapse and MedMesh store then get fresh databases
   * there (dropped again when the network stops cleanly) instead of SQLite and PGlite.
   */
  postgresUrl?: string;
  /**
   * Organisations (by index) whose Synapse runs as a main process plus workers and Redis, with
   * these `workers` settings (counts, stream writers; the harness picks the ports). Their Synapse
   * and store are on PostgreSQL (postgresUrl, else MEDMESH_TEST_POSTGRES_URL), as workers need.
   */
  workers?: Record<number, Record<string, unknown>>;
  /**
   * Requests the proxy refused as unknown endpoints fail the file (every client call must be in
   * the endpoint table); a test that sends junk on purpose opts out.
   */
  allowUnknownEndpoints?: boolean;
  /** Organisation ids left off the network's signed trust list, and how often lists are re-read. */
  trust?: { unlisted?: string[]; refresh_seconds?: number };
  /** Verified clinicians per organisation index (localparts; registered by the test). */
  verifiedClinicians?: Record<number, { localpart: string; display_name: string; profession: string }[]>;
  /** The deployment's identity section (registry endpoints, validity, re-verification). */
  identity?: Record<string, unknown>;
  /** Further organisation settings, by organisation index. */
  organisationSettings?: Record<number, Record<string, unknown>>;
  /**
   * Settings that depend on where the organisations will listen (e.g. an identity provider's
   * redirect URI), computed once the ports are chosen and before anything starts; merged over
   * organisationSettings.
   */
  organisationSettingsFor?: (
    orgs: readonly { ports: OrganisationPorts; clientUrl: string }[],
    dataDir: string,
  ) => Promise<Record<number, Record<string, unknown>>>;
}

/**
 * N organisations, each a real Synapse plus the MedMesh services, booted by the same
 * `startNetwork` that `npm start` uses, on free loopback ports, with the test profile (relaxed
 * rate limits) and a fresh data folder under .medmesh/test-runs/.
 */
export async function startTestNetwork(opts: TestNetworkOptions): Promise<TestNetwork> {
  const count = opts.organisations ?? 2;
  const dataDir = join(TEST_RUNS_DIR, `${opts.name}-${new Date().toISOString().replace(/[:.]/g, "-")}`);
  await mkdir(dataDir, { recursive: true });
  const ports = await Promise.all(Array.from({ length: count }, () => freeOrganisationPorts()));
  const letters = "abcdefghijklmnopqrstuvwxyz";
  const late = opts.organisationSettingsFor
    ? await opts.organisationSettingsFor(
        ports.map((p) => ({ ports: p, clientUrl: `http://127.0.0.1:${String(p.client)}` })),
        dataDir,
      )
    : {};
  const workerOrgs = Object.keys(opts.workers ?? {}).map(Number);
  const postgresUrl =
    opts.postgresUrl ?? (workerOrgs.length ? process.env.MEDMESH_TEST_POSTGRES_URL : undefined);
  if (workerOrgs.length && !postgresUrl) {
    throw new Error("Synapse workers need PostgreSQL: set MEDMESH_TEST_POSTGRES_URL (.ci/start-postgres.sh)");
  }
  const databases = postgresUrl
    ? await createPostgresDatabases(
        postgresUrl,
        opts.postgresUrl ? Array.from({ length: count }, (_, i) => i) : workerOrgs,
      )
    : undefined;
  const workers: Record<number, Record<string, unknown>> = {};
  for (const i of workerOrgs) {
    const settings = opts.workers?.[i] ?? {};
    workers[i] = { ...settings, ports: await freeWorkerPorts(workerCount(settings)) };
  }
  const deployment = parseConfig(
    DeploymentSchema,
    {
      data_dir: dataDir,
      profile: "test",
      redaction_retention_period: "5m",
      trust: { refresh_seconds: 2, ...opts.trust },
      ...(opts.identity ? { identity: opts.identity } : {}),
      organisations: Array.from({ length: count }, (_, i) => ({
        id: `org-${letters[i] ?? String(i)}`,
        name: `Test organisation ${(letters[i] ?? String(i)).toUpperCase()}`,
        ports: ports[i],
        verified_clinicians: opts.verifiedClinicians?.[i] ?? [],
        ...opts.organisationSettings?.[i],
        ...late[i],
        ...databases?.organisation(i),
        ...(workers[i] ? { workers: workers[i] } : {}),
      })),
    },
    `test network ${opts.name}`,
  );
  const network = await startNetwork(deployment, { baseDir: REPO_ROOT });
  const clients: MatrixClient[] = [];
  return {
    network,
    orgs: network.organisations,
    dataDir,
    async registerUser(org, localpart) {
      const name = localpart ?? `user-${randomBytes(4).toString("hex")}`;
      const password = randomBytes(12).toString("base64url");
      const reg = await registerWithSharedSecret(org.synapseUrl, org.registrationSecret, {
        localpart: name,
        password,
      });
      return { ...reg, localpart: name, password, org };
    },
    async client(user) {
      const c = await startClient(user.org.clientUrl, user);
      clients.push(c);
      return c;
    },
    async stop(failed) {
      for (const c of clients) c.stopClient();
      await network.stop();
      const unknown = opts.allowUnknownEndpoints ? [] : await unknownEndpointRefusals(network.organisations);
      const keep = failed || unknown.length > 0 || process.env.MEDMESH_KEEP_TEST_RUNS === "1";
      if (!keep) await databases?.drop();
      if (keep) {
        process.stderr.write(`test network data kept for inspection (Synapse logs, databases): ${dataDir}\n`);
      } else {
        await rm(dataDir, { recursive: true, force: true });
      }
      if (unknown.length) {
        throw new Error(
          `the proxy refused requests as unknown endpoints (add them to policy-module/src/proxy/endpoint-table.ts, or fix the caller):\n  ${unknown.join("\n  ")}`,
        );
      }
    },
  };
}

/** How many worker listeners a topology's settings ask for (the schema's defaults otherwise). */
function workerCount(s: Record<string, unknown>): number {
  const placeholder = { replication: 1, redis: 2, first_worker: 3 };
  return workerList(WorkersSchema.parse({ ...s, ports: placeholder })).length;
}

/** The proxy's unknown-endpoint refusals, from each organisation's policy-module log. */
async function unknownEndpointRefusals(orgs: readonly RunningOrganisation[]): Promise<string[]> {
  const found: string[] = [];
  for (const o of orgs) {
    const file = join(o.paths.root, "logs", "policy-module.log");
    const text = await readFile(file, "utf8").catch(() => "");
    for (const line of text.split("\n")) {
      if (!line.includes(UNKNOWN_ENDPOINT_LOG)) continue;
      const entry = JSON.parse(line) as { msg?: string; listener?: string; method?: string; path?: string };
      if (!entry.msg?.startsWith(UNKNOWN_ENDPOINT_LOG)) continue;
      found.push(`${o.org.id} ${entry.listener ?? "?"}: ${entry.method ?? "?"} ${entry.path ?? entry.msg}`);
    }
  }
  return found;
}

/** Per organisation: a Synapse database (C collation, as Synapse requires) and a store database. */
async function createPostgresDatabases(serverUrl: string, indices: readonly number[]) {
  const admin = knexFactory({ client: "pg", connection: serverUrl, pool: { min: 0, max: 1 } });
  const names: ({ synapse: string; store: string } | undefined)[] = [];
  try {
    for (const i of indices) {
      const suffix = `${String(i)}_${randomBytes(4).toString("hex")}`;
      const db = { synapse: `synapse_${suffix}`, store: `medmesh_${suffix}` };
      await admin.raw(
        `CREATE DATABASE ${db.synapse} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`,
      );
      await admin.raw(`CREATE DATABASE ${db.store}`);
      names[i] = db;
    }
  } finally {
    await admin.destroy();
  }
  const server = new URL(serverUrl);
  return {
    organisation(i: number) {
      const db = names[i];
      if (!db) return {};
      const storeUrl = new URL(serverUrl);
      storeUrl.pathname = `/${db.store}`;
      return {
        database: {
          type: "postgres",
          host: server.hostname,
          port: Number(server.port || 5432),
          user: decodeURIComponent(server.username),
          ...(server.password ? { password: decodeURIComponent(server.password) } : {}),
          database: db.synapse,
        },
        store: { type: "postgres", url: storeUrl.toString() },
      };
    },
    async drop() {
      const dropper = knexFactory({ client: "pg", connection: serverUrl, pool: { min: 0, max: 1 } });
      try {
        for (const db of names) {
          if (!db) continue;
          for (const name of [db.synapse, db.store])
            await dropper.raw(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        }
      } finally {
        await dropper.destroy();
      }
    },
  };
}
