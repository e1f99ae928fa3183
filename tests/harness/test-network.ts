import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import type { MatrixClient } from "matrix-js-sdk";
import { parseConfig } from "@medmesh/common";
import {
  DeploymentSchema,
  REPO_ROOT,
  startNetwork,
  type RunningNetwork,
  type RunningOrganisation,
} from "@medmesh/deploy";
import { registerWithSharedSecret } from "@medmesh/deploy";
import { startClient, type ClientUser } from "./clients.ts";
import { freePorts } from "./ports.ts";

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
  /** Stops everything; keeps the data folder (logs, databases) when `keep` is true. */
  stop(keep: boolean): Promise<void>;
}

export interface TestNetworkOptions {
  /** Test name, used for the run folder. */
  name: string;
  organisations?: number;
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
  const ports = await freePorts(count * 4);
  const letters = "abcdefghijklmnopqrstuvwxyz";
  const deployment = parseConfig(
    DeploymentSchema,
    {
      data_dir: dataDir,
      profile: "test",
      redaction_retention_period: "5m",
      organisations: Array.from({ length: count }, (_, i) => ({
        id: `org-${letters[i] ?? String(i)}`,
        name: `Test organisation ${(letters[i] ?? String(i)).toUpperCase()}`,
        ports: {
          client: ports[i * 4],
          federation: ports[i * 4 + 1],
          policy_module: ports[i * 4 + 2],
          bridge: ports[i * 4 + 3],
        },
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
    async stop(keep) {
      for (const c of clients) c.stopClient();
      await network.stop();
      if (keep) {
        process.stderr.write(`test network data kept for inspection (Synapse logs, databases): ${dataDir}\n`);
      } else {
        await rm(dataDir, { recursive: true, force: true });
      }
    },
  };
}
