import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { createHmac, createPrivateKey, createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { rm, writeFile } from "node:fs/promises";
import { join, resolve } from "node:path";
import { createLogger, ensureUser, type RegisteredUser, type RunningService } from "@medmesh/common";
import { startReferenceVendor } from "@medmesh/bridge";
import { startTimDriver, type RunningTimDriver } from "@medmesh/tim-driver";
import type { DeploymentConfig } from "./config/schema.ts";
import type { RunningBalancer } from "./balancer.ts";
import { generateNetwork, type GeneratedOrganisation } from "./generate.ts";
import { startBridges, startPolicyModules, type ServiceReplicas } from "./service-replicas.ts";
import { superviseSynapse, type SupervisedSynapse } from "./synapse/process.ts";
import { startRedis, startSynapseWithWorkers, workerPorts } from "./workers/processes.ts";

export const REPO_ROOT = resolve(import.meta.dirname, "../..");
const NETWORK_FILE = "network.json";

export interface RunningOrganisation extends GeneratedOrganisation {
  registrationSecret: string;
  synapse: SupervisedSynapse;
  services: RunningService[];
  /** Policy-module replicas beyond the first (`policy_module_replicas`; docs/replicas.md). */
  policyModuleReplicas?: RunningService[];
  /** With replicas: the balancers on the policy module's configured ports (service-replicas.ts). */
  policyModuleBalancers?: RunningBalancer[];
  /** Bridge replicas beyond the first (`bridge_replicas`), and their balancers. */
  bridgeReplicas?: RunningService[];
  bridgeBalancers?: RunningBalancer[];
  demoUsers: RegisteredUser[];
  /** The reference messenger of a demo network (its REST API is under `${url}/api`). */
  demoVendor?: { url: string; stop(): Promise<void> };
  /** The organisation's TI-Messenger test driver (docs/tim-driver.md), when configured. */
  timDriver?: RunningTimDriver;
}

export interface RunningNetwork {
  dataDir: string;
  caCertificate: string;
  descriptionFile: string;
  organisations: RunningOrganisation[];
  stop(): Promise<void>;
}

export interface StartNetworkOptions {
  /** Directory relative paths of the deployment config are resolved against. */
  baseDir: string;
  /** Called with progress lines ("starting Synapse for …"). */
  progress?: (line: string) => void;
}

/** Runs deploy/install-synapse.sh (quick when the pinned version is there); its lines go to `say`. */
export async function installSynapse(
  venv: string,
  say: (line: string) => void = () => undefined,
  opts: { redis?: boolean } = {},
): Promise<void> {
  const child = spawn(join(REPO_ROOT, "deploy", "install-synapse.sh"), [venv], {
    stdio: ["ignore", "pipe", "pipe"],
    // Synapse workers replicate over Redis: the venv then needs Synapse's `redis` extra.
    env: { ...process.env, ...(opts.redis ? { MEDMESH_SYNAPSE_REDIS: "1" } : {}) },
  });
  let output = "";
  const collect = (chunk: Buffer): void => {
    output += chunk.toString();
    for (const line of chunk.toString().split("\n")) if (line.trim()) say(line.trim());
  };
  child.stdout.on("data", collect);
  child.stderr.on("data", collect);
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  if (code !== 0) throw new Error(`installing Synapse failed (exit ${String(code)}):\n${output}`);
}

/**
 * Brings a whole network up — the production start functions of every piece, in the order a
 * real deployment needs them: generated config, Synapse, then the MedMesh services (which prove
 * their link to Synapse before they report ready). `npm start` and the test harness both use it.
 */
export async function startNetwork(
  deployment: DeploymentConfig,
  opts: StartNetworkOptions,
): Promise<RunningNetwork> {
  const say = opts.progress ?? (() => undefined);
  const venv = resolve(REPO_ROOT, deployment.synapse_venv);
  await installSynapse(venv, say, { redis: deployment.organisations.some((o) => o.workers) });
  await assertPortsFree(deployment);
  const generated = await generateNetwork(deployment, opts.baseDir);
  const running: RunningOrganisation[] = [];
  const stopAll = async (): Promise<void> => {
    await rm(join(generated.dataDir, NETWORK_FILE), { force: true });
    await Promise.allSettled(running.map((o) => stopOrganisation(o)));
  };
  try {
    const started = await Promise.allSettled(
      generated.organisations.map(async (g) => {
        const org = await startOrganisation(g, venv, say);
        running.push(org);
        return org;
      }),
    );
    const failed = started.find((r) => r.status === "rejected");
    if (failed) throw failed.reason;
  } catch (err) {
    await stopAll();
    throw err;
  }
  const ordered = generated.organisations.map(
    (g) => running.find((r) => r.org.id === g.org.id) as RunningOrganisation,
  );
  const descriptionFile = join(generated.dataDir, NETWORK_FILE);
  await writeFile(
    descriptionFile,
    JSON.stringify(describeNetwork(generated.caCertificate, ordered), null, 2) + "\n",
  );
  return {
    dataDir: generated.dataDir,
    caCertificate: generated.caCertificate,
    descriptionFile,
    organisations: ordered,
    stop: stopAll,
  };
}

/** Names the organisation and port up front, instead of a bare EADDRINUSE from deep in a start-up. */
async function assertPortsFree(deployment: DeploymentConfig): Promise<void> {
  const taken: string[] = [];
  for (const org of deployment.organisations) {
    const ports = {
      ...org.ports,
      ...(org.demo_vendor ? { demo_vendor: org.demo_vendor.port } : {}),
      ...(org.workers ? workerPorts(org.workers) : {}),
      ...(org.tim_driver ? { tim_driver: org.tim_driver.port } : {}),
    };
    for (const [name, port] of Object.entries(ports)) {
      const host = /^(synapse_|workers)/.test(name) ? "127.0.0.1" : org.bind_address;
      const free = await new Promise<boolean>((resolve) => {
        const probe = createServer();
        probe.once("error", () => {
          resolve(false);
        });
        probe.listen(port, host, () => {
          probe.close(() => {
            resolve(true);
          });
        });
      });
      if (!free) taken.push(`${org.name}: ports.${name} = ${String(port)} on ${host}`);
    }
  }
  if (taken.length) {
    throw new Error(`ports already in use (another MedMesh or Synapse running?):\n  ${taken.join("\n  ")}`);
  }
}

async function startOrganisation(
  g: GeneratedOrganisation,
  venv: string,
  say: (l: string) => void,
): Promise<RunningOrganisation> {
  say(`starting Synapse for ${g.org.name} (${g.serverName})`);
  const main = {
    venv,
    homeserverYaml: g.paths.homeserverYaml,
    extraConfigFiles: [g.paths.federationWhitelist],
    workDir: g.paths.synapseDir,
    clientUrl: g.synapseUrl,
    logFile: g.paths.logFile,
  };
  const workers = g.workers;
  const redis = workers ? await startRedis(workers.redis) : undefined;
  // With workers, a restart (trust list change) restarts every process: all read the whitelist.
  const synapse = await superviseSynapse(
    workers ? () => startSynapseWithWorkers(main, workers.workers) : main,
  ).catch(async (err: unknown) => {
    await redis?.stop();
    throw err;
  });
  const stopSynapse = async () => {
    await synapse.stop();
    await redis?.stop();
  };
  // Redis goes with Synapse: stopped after every process that uses it.
  const running: SupervisedSynapse = {
    get pid() {
      return synapse.pid;
    },
    get stdoutLog() {
      return synapse.stdoutLog;
    },
    exited: synapse.exited,
    restart: () => synapse.restart(),
    stop: stopSynapse,
  };
  const services: RunningService[] = [];
  let policy: ServiceReplicas | undefined;
  let bridges: ServiceReplicas | undefined;
  let demoVendor: { url: string; stop(): Promise<void> } | undefined;
  let timDriver: RunningTimDriver | undefined;
  try {
    const logDir = join(g.paths.root, "logs");
    say(`starting MedMesh services for ${g.org.name}`);
    policy = await startPolicyModules(g, logDir, async () => {
      say(`trust list changed: restarting Synapse of ${g.org.name} with the new federation whitelist`);
      await synapse.restart();
    });
    services.push(policy.first);
    bridges = await startBridges(g, logDir);
    services.push(bridges.first);
    demoVendor = g.org.demo_vendor ? await startDemoVendor(g, logDir) : undefined;
    const registrationSecret = readFileSync(g.paths.registrationSecret, "utf8").trim();
    const demoUsers: RegisteredUser[] = [];
    for (const u of g.org.demo_users) {
      demoUsers.push(
        await ensureUser(g.synapseUrl, registrationSecret, {
          localpart: u.localpart,
          password: u.password,
          admin: u.admin,
          ...(u.display_name === undefined ? {} : { displayName: u.display_name }),
        }),
      );
    }
    timDriver = g.org.tim_driver
      ? await startOrganisationTimDriver(g, registrationSecret, logDir)
      : undefined;
    return {
      ...g,
      registrationSecret,
      synapse: running,
      services,
      policyModuleReplicas: policy.further,
      policyModuleBalancers: policy.balancers,
      bridgeReplicas: bridges.further,
      bridgeBalancers: bridges.balancers,
      demoUsers,
      ...(demoVendor ? { demoVendor } : {}),
      ...(timDriver ? { timDriver } : {}),
    };
  } catch (err) {
    await timDriver?.stop();
    await demoVendor?.stop();
    await bridges?.stop();
    await policy?.stop();
    await stopSynapse();
    throw err;
  }
}

/**
 * The reference messenger beside a demo organisation's bridge, with its demo users: a person can
 * chat across the bridge (docs/bridge.md, bridge/src/vendor/README.md).
 */
async function startDemoVendor(
  g: GeneratedOrganisation,
  logDir: string,
): Promise<{ url: string; stop(): Promise<void> }> {
  const demo = g.org.demo_vendor;
  if (!demo || !g.bridge.interop) throw new Error("no demo vendor configured");
  const log = createLogger("demo-vendor", "info", join(logDir, "demo-vendor.log"));
  const vendor = await startReferenceVendor({
    dataFile: g.paths.demoVendorData,
    listen: { host: g.org.bind_address, port: demo.port },
    vendorId: demo.id,
    keyId: `${demo.id}-demo`,
    privateKey: createPrivateKey(readFileSync(g.paths.demoVendorKey)),
    medmesh: {
      url: g.bridge.interop.public_url,
      keyId: g.bridge.interop.signing_key.key_id,
      publicKey: createPublicKey(readFileSync(g.paths.bridgeSigningKey)).export({ format: "jwk" }),
    },
    log,
  });
  for (const u of demo.users) {
    const res = await fetch(`${vendor.url}/api/users`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(u),
    });
    if (!res.ok) throw new Error(`the demo messenger refused user ${u.id}: ${await res.text()}`);
  }
  return vendor;
}

/**
 * The TI-M test driver of a test organisation, with its pool of accounts (tim-device-1…N; their
 * passwords derived from the registration secret, so a restart logs into the same accounts).
 */
async function startOrganisationTimDriver(
  g: GeneratedOrganisation,
  registrationSecret: string,
  logDir: string,
): Promise<RunningTimDriver> {
  const conf = g.org.tim_driver;
  if (!conf) throw new Error("no TI-M test driver configured");
  const accounts = [];
  for (let i = 1; i <= conf.devices; i++) {
    const localpart = `tim-device-${String(i)}`;
    const password = createHmac("sha256", registrationSecret).update(localpart).digest("base64url");
    const display = `TIM device ${String(i)} (${g.org.name})`;
    await ensureUser(g.synapseUrl, registrationSecret, { localpart, password, displayName: display });
    accounts.push({ username: localpart, password, display_name: display });
  }
  return startTimDriver(
    {
      listen: { host: g.org.bind_address, port: conf.port },
      homeserver: { client_url: g.clientUrl, server_name: g.serverName },
      profile: g.org.profile === "tim-epa" ? "tim-epa" : "tim-pro",
      accounts,
      // Its devices and recovery keys: a restarted network's drivers go on with the same devices.
      data_dir: join(g.paths.root, "tim-driver"),
    },
    {
      log: createLogger("tim-driver", "info", join(logDir, "tim-driver.log")),
      source: `${g.org.id} tim_driver`,
    },
  );
}

async function stopOrganisation(o: RunningOrganisation): Promise<void> {
  await o.timDriver?.stop();
  await o.demoVendor?.stop();
  const balancers = [...(o.policyModuleBalancers ?? []), ...(o.bridgeBalancers ?? [])];
  await Promise.allSettled(balancers.map((b) => b.stop()));
  const replicas = [...(o.policyModuleReplicas ?? []), ...(o.bridgeReplicas ?? [])];
  await Promise.allSettled([...replicas, ...o.services].map((s) => s.stop()));
  await o.synapse.stop();
}

/** The machine-readable description of a running network; documented in docs/network-description.md. */
export function describeNetwork(
  caCertificate: string,
  orgs: readonly RunningOrganisation[],
): Record<string, unknown> {
  return {
    version: 1,
    started_at: new Date().toISOString(),
    runner_pid: process.pid,
    ca_certificate: caCertificate,
    organisations: orgs.map((o) => ({
      id: o.org.id,
      name: o.org.name,
      server_name: o.serverName,
      client_url: o.clientUrl,
      // The organisation's admin console (docs/console.md); its admins sign in with their Matrix account.
      console_url: `${o.clientUrl}/_medmesh/console/`,
      federation_url: o.federationUrl,
      ...(o.timDriver ? { tim_driver_url: o.timDriver.url } : {}),
      registration_shared_secret_file: o.paths.registrationSecret,
      services: Object.fromEntries(
        o.services.map((s) => [
          s.name,
          {
            url: s.url,
            health: `${s.url}/health`,
            metrics: `${s.url}/metrics`,
            // Bearer token for /metrics and the admin API (docs/production.md).
            admin_token_file: o.adminTokenFiles[s.name as keyof GeneratedOrganisation["adminTokenFiles"]],
            ...(s.endpoints.interop ? { interop_url: s.endpoints.interop } : {}),
          },
        ]),
      ),
      synapse: {
        pid: o.synapse.pid,
        url: o.synapseUrl,
        homeserver_yaml: o.paths.homeserverYaml,
        log_file: o.paths.logFile,
      },
      demo_users: o.org.demo_users.map((u, i) => ({
        user_id: o.demoUsers[i]?.userId,
        localpart: u.localpart,
        password: u.password,
        admin: u.admin,
      })),
    })),
  };
}
