import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative, resolve } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { loadConfigFile, loadRegistration, parseConfig, ServiceConfigSchema } from "@medmesh/common";
import { PolicyModuleConfigSchema } from "@medmesh/policy-module";
import { BridgeConfigSchema } from "@medmesh/bridge";
import { DeploymentSchema, type DeploymentConfig } from "./config/schema.ts";
import { generateNetwork, type GeneratedOrganisation } from "./generate.ts";
import { REPO_ROOT } from "./network.ts";

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  command?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  ports?: string[];
  secrets?: string[];
  healthcheck?: { test: string[] };
  depends_on?: Record<string, { condition: string }>;
  profiles?: string[];
}
interface Compose {
  services: Record<string, ComposeService>;
  secrets: Record<string, { file: string }>;
  volumes: Record<string, unknown>;
}

const compose = parseYaml(readFileSync(join(REPO_ROOT, "docker-compose.yml"), "utf8"), {
  merge: true,
}) as Compose;
const CONFIG = join(REPO_ROOT, "config", "docker", "deployment.yaml");
const svc = (name: string): ComposeService => {
  const s = compose.services[name];
  if (!s) throw new Error(`docker-compose.yml has no service '${name}'`);
  return s;
};

let deployment: DeploymentConfig;
let org: GeneratedOrganisation;
let containerRoot: string; // where /data of the containers is, on this machine, for the test
const secretValues = {
  synapse_db_password: "synapse-secret-value",
  medmesh_db_password: "medmesh-secret-value",
};

/** Maps a path inside a container onto the generated output, through the compose volume mounts. */
function hostPathOf(service: ComposeService, containerPath: string): string | undefined {
  for (const v of service.volumes ?? []) {
    const [source, target] = v.split(":") as [string, string];
    if (containerPath === target || containerPath.startsWith(`${target}/`)) {
      const hostSource =
        resolve(REPO_ROOT, source) === resolve(REPO_ROOT, ".medmesh/docker")
          ? containerRoot
          : resolve(REPO_ROOT, source);
      return join(hostSource, relative(target, containerPath));
    }
  }
  return undefined;
}

function stringsIn(value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value)) return value.flatMap(stringsIn);
  if (value && typeof value === "object") return Object.values(value).flatMap(stringsIn);
  return [];
}

/** Generates exactly what an operator would, with the secrets in a temp folder (and `org` merged in). */
async function generate(orgExtra: Record<string, unknown> = {}) {
  const tmp = mkdtempSync(join(tmpdir(), "medmesh-compose-"));
  for (const [name, value] of Object.entries(secretValues)) writeFileSync(join(tmp, name), value);
  const text = readFileSync(CONFIG, "utf8").replaceAll("../../deploy/docker/secrets/", `${tmp}/`);
  const raw = parseYaml(text) as { organisations: Record<string, unknown>[] };
  const root = join(tmp, "data");
  const config = parseConfig(
    DeploymentSchema,
    { ...raw, data_dir: root, organisations: raw.organisations.map((o) => ({ ...o, ...orgExtra })) },
    CONFIG,
    join(REPO_ROOT, "config", "docker"),
  );
  const net = await generateNetwork(config, join(REPO_ROOT, "config", "docker"));
  return { config, root, org: net.organisations[0]! };
}

beforeAll(async () => {
  ({ config: deployment, root: containerRoot, org } = await generate());
});

describe("docker-compose.yml (production reference for one organisation)", () => {
  it("uses the config in config/docker, which validates as it is committed", () => {
    const configured = parseYaml(readFileSync(CONFIG, "utf8")) as { data_dir: string };
    // The compose data mount is the folder the committed config generates into.
    expect(resolve(REPO_ROOT, "config", "docker", configured.data_dir)).toBe(
      resolve(REPO_ROOT, ".medmesh/docker"),
    );
    for (const name of ["synapse", "policy-module", "bridge"]) {
      expect(svc(name).volumes).toContain("./.medmesh/docker:/data");
    }
    expect(deployment.container?.data_dir).toBe("/data");
    // As committed it fails only for the operator's missing secrets, named by field.
    if (!existsSync(join(REPO_ROOT, "deploy/docker/secrets/synapse_db_password"))) {
      expect(() => loadConfigFile(DeploymentSchema, CONFIG)).toThrow(
        /organisations\.0\.database\.password: cannot read secret file/,
      );
    }
  });

  it("pins every image, and Synapse to deploy/SYNAPSE_VERSION", () => {
    const version = readFileSync(join(REPO_ROOT, "deploy", "SYNAPSE_VERSION"), "utf8").trim();
    expect(svc("synapse").image).toBe(`ghcr.io/element-hq/synapse:v${version}`);
    for (const [name, s] of Object.entries(compose.services)) {
      expect(s.image, `${name} image`).toMatch(/:v?\d+\.\d+(\.\d+)?(-[a-z0-9]+)?$/);
    }
    const dockerfile = readFileSync(join(REPO_ROOT, "deploy", "docker", "Dockerfile"), "utf8");
    const pkg = JSON.parse(readFileSync(join(REPO_ROOT, "package.json"), "utf8")) as {
      devDependencies: { node: string };
    };
    expect(dockerfile).toContain(`FROM node:${pkg.devDependencies.node}-`);
  });

  it("gives every service a health check", () => {
    for (const [name, s] of Object.entries(compose.services))
      expect(s.healthcheck?.test.length, name).toBeGreaterThan(0);
  });

  it("mounts and references only files that exist in the repo or the generated output", () => {
    for (const [name, s] of Object.entries(compose.services)) {
      for (const v of s.volumes ?? []) {
        const source = v.split(":")[0]!;
        if (source.startsWith(".")) {
          if (resolve(REPO_ROOT, source) !== resolve(REPO_ROOT, ".medmesh/docker")) {
            expect(existsSync(resolve(REPO_ROOT, source)), `${name} mounts ${source}`).toBe(true);
          }
        } else {
          expect(compose.volumes, `${name} volume ${source}`).toHaveProperty(source);
        }
      }
      const referenced = [...(s.command ?? []), ...Object.values(s.environment ?? {})].filter((x) =>
        x.startsWith("/data/"),
      );
      for (const p of referenced)
        expect(existsSync(hostPathOf(s, p) ?? ""), `${name} references ${p}`).toBe(true);
    }
    // Every container path inside the generated configs resolves through the mount.
    for (const file of [
      org.paths.homeserverYaml,
      org.paths.policyModuleConfig,
      org.paths.bridgeConfig,
      org.paths.logConfig,
    ]) {
      const paths = stringsIn(parseYaml(readFileSync(file, "utf8"))).filter((x) => x.startsWith("/data/"));
      expect(paths.length, file).toBeGreaterThan(0);
      for (const p of paths) {
        const host = hostPathOf(svc("synapse"), p) ?? "";
        // The log file and pid file appear at run time; their folder must exist.
        expect(existsSync(host) || existsSync(join(host, "..")), `${p} from ${file}`).toBe(true);
      }
    }
    expect(existsSync(join(REPO_ROOT, svc("policy-module").build!.dockerfile))).toBe(true);
    // Synapse reads its config folder: homeserver.yaml plus the trust list's federation whitelist,
    // the same file the policy module keeps current.
    const configDir = hostPathOf(svc("synapse"), svc("synapse").environment!.SYNAPSE_CONFIG_PATH!) ?? "";
    expect(
      readdirSync(configDir)
        .filter((f) => f.endsWith(".yaml"))
        .sort(),
    ).toEqual(["federation-whitelist.yaml", "homeserver.yaml"]);
    const pm = parseYaml(readFileSync(org.paths.policyModuleConfig, "utf8")) as {
      trust: { synapse_whitelist_file: string };
    };
    expect(hostPathOf(svc("policy-module"), pm.trust.synapse_whitelist_file)).toBe(
      join(configDir, "federation-whitelist.yaml"),
    );
  });

  it("loads MedMesh's Synapse module from the mounted folder, asking the policy module by service name", () => {
    const hs = parseYaml(readFileSync(org.paths.homeserverYaml, "utf8")) as {
      modules: { module: string; config: { decision_url: string; token_file: string } }[];
    };
    const [pkg = "", cls] = hs.modules[0]!.module.split(".");
    const folder = hostPathOf(svc("synapse"), svc("synapse").environment!.PYTHONPATH!) ?? "";
    expect(readFileSync(join(folder, pkg, "__init__.py"), "utf8")).toContain(`class ${cls ?? ""}`);
    const pm = parseYaml(readFileSync(org.paths.policyModuleConfig, "utf8")) as {
      listen: { port: number };
      synapse_module: { token_file: string };
    };
    expect(hs.modules[0]!.config.decision_url).toBe(`http://policy-module:${String(pm.listen.port)}`);
    // One token file, read by both sides.
    expect(hostPathOf(svc("synapse"), hs.modules[0]!.config.token_file)).toBe(
      hostPathOf(svc("policy-module"), pm.synapse_module.token_file),
    );
  });

  it("publishes only the policy proxy's and the bridge's public ports, and health-checks Synapse on its private listener", () => {
    const hs = parseYaml(readFileSync(org.paths.homeserverYaml, "utf8")) as {
      listeners: { port: number; tls: boolean; bind_addresses: string[]; resources: { names: string[] }[] }[];
    };
    const listener = (resource: string) =>
      hs.listeners.find((l) => l.resources[0]?.names.includes(resource))!;
    // Synapse: plain HTTP on the container network only, reached through the proxy.
    expect(listener("federation")).toMatchObject({ tls: false, bind_addresses: ["0.0.0.0"] });
    expect(svc("synapse").ports).toBeUndefined();
    expect(svc("synapse").healthcheck?.test.join(" ")).toContain(
      `http://localhost:${String(listener("client").port)}/health`,
    );
    const pm = parseConfig(
      PolicyModuleConfigSchema,
      parseYaml(readFileSync(org.paths.policyModuleConfig, "utf8")),
      "pm",
    );
    const proxy = pm.proxy!;
    expect(proxy.federation.upstream).toBe(`http://synapse:${String(listener("federation").port)}`);
    expect(pm.homeserver.url).toBe(`http://synapse:${String(listener("client").port)}`);
    expect(svc("policy-module").ports).toEqual([
      `${String(proxy.federation.port)}:${String(proxy.federation.port)}`,
      `127.0.0.1:${String(proxy.client.port)}:${String(proxy.client.port)}`,
    ]);
    for (const name of ["postgres", "synapse"]) expect(svc(name).ports, name).toBeUndefined();
    // The bridge publishes its interop listener only, never its internal one.
    const bridge = parseConfig(
      BridgeConfigSchema,
      parseYaml(readFileSync(org.paths.bridgeConfig, "utf8")),
      "b",
    );
    const interop = bridge.interop!.listen.port;
    expect(interop).not.toBe(bridge.listen.port);
    expect(svc("bridge").ports).toEqual([`127.0.0.1:${String(interop)}:${String(interop)}`]);
    expect(bridge.interop!.listen.host).toBe("0.0.0.0");
  });

  it("wires appservices and services to each other by compose service name and listening port", () => {
    for (const [name, registration, config] of [
      ["policy-module", org.paths.policyModuleRegistration, org.paths.policyModuleConfig],
      ["bridge", org.paths.bridgeRegistration, org.paths.bridgeConfig],
    ] as const) {
      const service = parseConfig(ServiceConfigSchema, parseYaml(readFileSync(config, "utf8")), config);
      const port = String(service.listen.port);
      expect(loadRegistration(registration).url).toBe(`http://${name}:${port}`);
      expect(service.listen.host).toBe("0.0.0.0");
      expect(svc(name).healthcheck?.test.join(" ")).toContain(`http://localhost:${port}/health`);
      expect(svc(name).command).toContain(`/data/hospital-a/${name}.yaml`);
      // The bridge acts through the policy proxy (its ghosts obey the organisation's rules).
      expect(service.homeserver.url).toMatch(
        name === "bridge" ? /^http:\/\/policy-module:8008$/ : /^http:\/\/synapse:\d+$/,
      );
      expect(svc(name).depends_on?.synapse?.condition).toBe("service_healthy");
      expect(service.appservice.registration_file).toBe(`/data/hospital-a/appservices/${name}.yaml`);
      // Admin tokens are generated into the mounted data folder; the org-admin check asks Synapse.
      expect(existsSync(hostPathOf(svc(name), service.admin.token_file ?? "") ?? "")).toBe(true);
      expect(service.admin.synapse_url).toBe(`http://synapse:18008`);
    }
  });

  it("points Synapse and the store at the postgres service, databases its init script creates", () => {
    const init = readFileSync(join(REPO_ROOT, "deploy", "docker", "postgres-init.sh"), "utf8");
    const hs = parseYaml(readFileSync(org.paths.homeserverYaml, "utf8")) as {
      database: { name: string; args: { host: string; user: string; dbname: string; password: string } };
    };
    expect(hs.database.name).toBe("psycopg2");
    expect(compose.services).toHaveProperty(hs.database.args.host);
    expect(hs.database.args.password).toBe(secretValues.synapse_db_password);
    expect(init).toMatch(new RegExp(`CREATE ROLE ${hs.database.args.user} LOGIN`));
    expect(init).toMatch(
      new RegExp(
        `CREATE DATABASE ${hs.database.args.dbname} OWNER ${hs.database.args.user} .*LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0`,
      ),
    );
    expect(svc("synapse").depends_on?.postgres?.condition).toBe("service_healthy");

    const store = parseConfig(
      ServiceConfigSchema,
      parseYaml(readFileSync(org.paths.policyModuleConfig, "utf8")),
      "pm",
    ).store;
    if (store.type !== "postgres")
      throw new Error("the compose deployment must use PostgreSQL for the store");
    const url = new URL(store.url);
    expect(compose.services).toHaveProperty(url.hostname);
    expect(store.password).toBe(secretValues.medmesh_db_password);
    expect(init).toMatch(new RegExp(`CREATE ROLE ${url.username} LOGIN`));
    expect(init).toMatch(new RegExp(`CREATE DATABASE ${url.pathname.slice(1)} OWNER ${url.username}`));
  });

  it("declares every secret that services or the init script use", () => {
    const init = readFileSync(join(REPO_ROOT, "deploy", "docker", "postgres-init.sh"), "utf8");
    const used = [...init.matchAll(/\/run\/secrets\/(\w+)/g)].map((m) => m[1]!);
    expect(used.length).toBeGreaterThan(0);
    for (const s of used) expect(svc("postgres").secrets).toContain(s);
    for (const [name, s] of Object.entries(compose.services)) {
      for (const secret of s.secrets ?? [])
        expect(compose.secrets, `${name} uses ${secret}`).toHaveProperty(secret);
    }
    const env = svc("postgres").environment ?? {};
    expect(Object.keys(compose.secrets)).toContain(env.POSTGRES_PASSWORD_FILE?.replace("/run/secrets/", ""));
    // The secret files the operator creates are the ones the deployment config reads.
    const config = readFileSync(CONFIG, "utf8");
    for (const [, file] of config.matchAll(/\$\{file:\.\.\/\.\.\/(deploy\/docker\/secrets\/\w+)\}/g)) {
      expect(Object.values(compose.secrets).map((s) => s.file)).toContain(`./${file!}`);
    }
  });

  it("runs an organisation's Synapse workers as containers of their own, named as instance_map names them", async () => {
    const g = await generate({
      workers: {
        generic: 2,
        event_persister: 1,
        federation_sender: 1,
        media_repository: 1,
        // Redis in its own container listens on its default port (the redis service's command).
        ports: { replication: 9093, redis: 6379, first_worker: 9110 },
      },
    });
    const file = join(g.root, "hospital-a", "docker-compose.workers.yml");
    const overlay = parseYaml(readFileSync(file, "utf8")) as { services: Record<string, ComposeService> };
    const shared = parseYaml(readFileSync(g.org.paths.homeserverYaml, "utf8")) as {
      instance_map: Record<string, { host: string; port: number }>;
      redis: { host: string; port: number };
    };
    const workerNames = Object.keys(shared.instance_map).filter((n) => n !== "main");
    expect(workerNames).toHaveLength(6); // and the appservice pusher, there by default
    expect(shared.instance_map.main?.host).toBe("synapse");
    expect(shared.redis).toMatchObject({ host: "redis", port: 6379 });
    expect(svc("redis").command).not.toContain("--port");
    // Each worker's host is its compose service; each runs the main image, config folder and module.
    expect(Object.keys(overlay.services).sort()).toEqual(
      workerNames.map((n) => shared.instance_map[n]!.host).sort(),
    );
    for (const name of workerNames) {
      const s = overlay.services[shared.instance_map[name]!.host]!;
      expect(s.image).toBe(svc("synapse").image);
      expect(s.profiles).toEqual(["workers"]);
      expect(Object.keys(s.depends_on ?? {}).sort()).toEqual(["redis", "synapse"]);
      const entry = (s as { entrypoint: string[] }).entrypoint;
      expect(entry.slice(0, 2)).toEqual(["python", "-m"]);
      const configs = entry.filter((_, i) => entry[i - 1] === "--config-path");
      expect(configs).toEqual([
        svc("synapse").environment?.SYNAPSE_CONFIG_PATH,
        `/data/hospital-a/synapse/workers/${name}.yaml`,
      ]);
      // The worker's file, as the container sees it through its own mounts, is the generated one.
      const own = s.volumes?.find((v) => v.endsWith(":/data"))?.split(":")[0];
      expect(own).toBe(g.root);
      expect(
        readFileSync(join(g.root, "hospital-a", "synapse", "workers", `${name}.yaml`), "utf8"),
      ).toContain(`worker_name: ${name}`);
      expect(s.environment?.PYTHONPATH).toBe(svc("synapse").environment?.PYTHONPATH);
    }
    // The proxy reaches the workers by the same names.
    const pm = parseYaml(readFileSync(join(g.root, "hospital-a", "policy-module.yaml"), "utf8")) as {
      proxy: { workers: { upstreams: string[] }[] };
    };
    const hosts = new Set(pm.proxy.workers.flatMap((r) => r.upstreams.map((u) => new URL(u).hostname)));
    expect([...hosts].every((h) => overlay.services[h] !== undefined)).toBe(true);
    expect(hosts.size).toBeGreaterThan(0);
  });

  it("runs Redis for Synapse workers only under the workers profile, on the compose network only", () => {
    const redis = svc("redis");
    expect(redis.profiles).toEqual(["workers"]);
    expect(redis.ports ?? []).toEqual([]);
    expect(redis.command).toEqual(expect.arrayContaining(["--save", "", "--appendonly", "no"]));
  });
});
