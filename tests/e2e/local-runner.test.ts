import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parse as parseYaml, stringify } from "yaml";
import { REPO_ROOT } from "@medmesh/deploy";
import { freeOrganisationPorts, freePorts, TEST_RUNS_DIR } from "../harness/index.ts";

interface Description {
  runner_pid: number;
  organisations: {
    server_name: string;
    client_url: string;
    console_url: string;
    registration_shared_secret_file: string;
    synapse: { pid: number };
    services: Record<
      string,
      { health: string; metrics: string; admin_token_file: string; interop_url?: string }
    >;
    demo_users: { user_id: string; localpart: string; password: string; admin: boolean }[];
  }[];
}

const dataDir = join(TEST_RUNS_DIR, `npm-start-${String(Date.now())}`);
const configFile = join(dataDir, "network.yaml");
let failed = false;

/** `npm start` exactly as a newcomer runs it, in its own process group like a terminal job. */
function npmStart(configFile: string): { child: ChildProcess; output: () => string; ready: Promise<number> } {
  const child = spawn("npm", ["start", "--", "--config", configFile], {
    cwd: REPO_ROOT,
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const started = Date.now();
  const ready = new Promise<number>((resolve, reject) => {
    const onData = (chunk: Buffer): void => {
      output += chunk.toString();
      if (output.includes("press Ctrl-C to stop")) resolve(Date.now() - started);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => {
      reject(new Error(`npm start exited with ${String(code)} before ready:\n${output}`));
    });
  });
  return { child, output: () => output, ready };
}

/**
 * Ctrl-C: SIGINT to the whole foreground process group, as a terminal sends it. Resolves once npm
 * has exited and every given process is gone (or 30 s passed); returns those still alive.
 */
async function ctrlC(child: ChildProcess, pids: number[]): Promise<number[]> {
  const exited = new Promise((resolve) => child.once("exit", resolve));
  process.kill(-(child.pid ?? 0), "SIGINT");
  await exited;
  const deadline = Date.now() + 30_000;
  while (pids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  return pids.filter(alive);
}

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function login(clientUrl: string, user: string, password: string): Promise<Response> {
  return fetch(new URL("/_matrix/client/v3/login", clientUrl), {
    method: "POST",
    body: JSON.stringify({ type: "m.login.password", identifier: { type: "m.id.user", user }, password }),
  });
}

describe("npm start", () => {
  afterAll(async () => {
    if (!failed) await rm(dataDir, { recursive: true, force: true });
  });

  it("brings up two organisations, describes them, stops cleanly on Ctrl-C and resumes on restart", async (ctx) => {
    ctx.onTestFailed(() => {
      failed = true;
    });
    await mkdir(dataDir, { recursive: true });
    const portsA = await freeOrganisationPorts();
    const portsB = await freeOrganisationPorts();
    const [vendorPort] = (await freePorts(1)) as [number];
    await writeFile(
      configFile,
      stringify({
        data_dir: dataDir,
        organisations: [
          {
            id: "hospital-a",
            name: "Hospital A",
            ports: portsA,
            demo_users: [
              { localpart: "alice", password: "medmesh-demo-alice" },
              { localpart: "admin-a", password: "medmesh-demo-admin-a", admin: true },
            ],
            demo_vendor: { id: "refmsg", port: vendorPort, users: [{ id: "anna", display_name: "Anna" }] },
          },
          {
            id: "gp-circle-b",
            name: "GP circle B",
            ports: portsB,
            demo_users: [{ localpart: "bob", password: "medmesh-demo-bob" }],
          },
        ],
      }),
    );

    const first = npmStart(configFile);
    const readyMs = await first.ready;
    expect(first.output()).toMatch(/MedMesh is ready/);
    expect(first.output()).toContain(`client URL:    http://127.0.0.1:${String(portsA.client)}`);
    expect(first.output()).toContain("demo login:    bob / medmesh-demo-bob");
    expect(first.output()).toContain(
      `admin console: http://127.0.0.1:${String(portsA.client)}/_medmesh/console/`,
    );
    expect(first.output()).toContain("demo login:    admin-a / medmesh-demo-admin-a  (org admin: console)");
    expect(first.output()).toContain(`@bridge_refmsg_anna:localhost:${String(portsA.federation)}`);
    const vendorUsers = (await (await fetch(`http://127.0.0.1:${String(vendorPort)}/api/users`)).json()) as {
      users: { id: string }[];
    };
    expect(vendorUsers.users.map((u) => u.id)).toContain("anna");
    process.stderr.write(`npm start: ready after ${String(readyMs)} ms (first start, fresh data)\n`);

    const descriptionFile = join(dataDir, "network.json");
    const description = JSON.parse(readFileSync(descriptionFile, "utf8")) as Description;
    expect(description.organisations.map((o) => o.server_name)).toEqual([
      `localhost:${String(portsA.federation)}`,
      `localhost:${String(portsB.federation)}`,
    ]);
    for (const org of description.organisations) {
      const versions = await fetch(new URL("/_matrix/client/versions", org.client_url));
      expect(versions.status).toBe(200);
      expect(((await versions.json()) as { versions: string[] }).versions.length).toBeGreaterThan(0);
      for (const svc of Object.values(org.services)) {
        expect((await fetch(svc.health)).status).toBe(200);
        // Scripts find each service's admin token where the description says.
        expect((await fetch(svc.metrics)).status).toBe(401);
        const token = readFileSync(svc.admin_token_file, "utf8").trim();
        const metrics = await fetch(svc.metrics, { headers: { authorization: `Bearer ${token}` } });
        expect(metrics.status).toBe(200);
      }
      expect(org.services.bridge?.interop_url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const user = org.demo_users[0]!;
      expect((await login(org.client_url, user.localpart, user.password)).status).toBe(200);
      expect(existsSync(org.registration_shared_secret_file)).toBe(true);
      const page = await fetch(org.console_url);
      expect(page.status).toBe(200);
      expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    }
    // The demo org admin signs in to the console (the page's own two steps).
    const hospital = description.organisations[0]!;
    const admin = hospital.demo_users.find((u) => u.admin)!;
    const { access_token } = (await (
      await login(hospital.client_url, admin.localpart, admin.password)
    ).json()) as {
      access_token: string;
    };
    const session = await fetch(`${hospital.client_url}/_medmesh/console/api/v1/session`, {
      method: "POST",
      headers: { authorization: `Bearer ${access_token}` },
    });
    expect(((await session.json()) as { role: string }).role).toBe("org_admin");
    const pids = [description.runner_pid, ...description.organisations.map((o) => o.synapse.pid)];
    expect(pids.every(alive)).toBe(true);
    const signingKey = readFileSync(join(dataDir, "hospital-a", "secrets", "signing.key"), "utf8");

    expect(await ctrlC(first.child, pids)).toEqual([]);
    expect(first.output()).toContain("stopped; data kept");
    expect(existsSync(descriptionFile)).toBe(false);

    // Restart on the same data: same keys, the demo users still exist (logged in, not re-created).
    const second = npmStart(configFile);
    await second.ready;
    expect(readFileSync(join(dataDir, "hospital-a", "secrets", "signing.key"), "utf8")).toBe(signingKey);
    const again = JSON.parse(readFileSync(descriptionFile, "utf8")) as Description;
    expect(again.organisations[1]?.demo_users[0]?.user_id).toBe(
      `@bob:localhost:${String(portsB.federation)}`,
    );
    expect((await login(again.organisations[0]!.client_url, "alice", "medmesh-demo-alice")).status).toBe(200);
    expect(
      await ctrlC(second.child, [again.runner_pid, ...again.organisations.map((o) => o.synapse.pid)]),
    ).toEqual([]);
    expect(second.output()).toContain("stopped; data kept");
  });

  it("stops everything and exits non-zero, naming the log, when a homeserver dies", async (ctx) => {
    ctx.onTestFailed(() => {
      failed = true;
    });
    const run = npmStart(configFile);
    await run.ready;
    const description = JSON.parse(readFileSync(join(dataDir, "network.json"), "utf8")) as Description;
    const [a, b] = description.organisations;
    const exited = new Promise((resolve) => run.child.once("exit", resolve));
    process.kill(b!.synapse.pid, "SIGKILL");
    expect(await exited).toBe(1);
    expect(run.output()).toMatch(
      /error: Synapse of GP circle B exited unexpectedly \(code null\); see .*homeserver\.log/,
    );
    const deadline = Date.now() + 30_000;
    while ([description.runner_pid, a!.synapse.pid].some(alive) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect([description.runner_pid, a!.synapse.pid].filter(alive)).toEqual([]);
  });

  it("refuses to start when a port is taken, naming the organisation and the port", async () => {
    const yamlText = readFileSync(configFile, "utf8");
    const blocker = createServer();
    const port = (parseYaml(yamlText) as { organisations: { ports: { client: number } }[] }).organisations[1]!
      .ports.client;
    await new Promise<void>((resolve) => blocker.listen(port, "127.0.0.1", resolve));
    try {
      const run = npmStart(configFile);
      await expect(run.ready).rejects.toThrow(/exited with 1 before ready/);
      expect(run.output()).toContain(`GP circle B: ports.client = ${String(port)} on 127.0.0.1`);
      expect(existsSync(join(dataDir, "network.json"))).toBe(false);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
