import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { parseConfig } from "@medmesh/common";
import { PolicyModuleConfigSchema, WORKER_ROUTES } from "@medmesh/policy-module";
import { DeploymentSchema } from "../config/schema.ts";
import { STREAMS } from "../config/workers-schema.ts";
import { generateNetwork } from "../generate.ts";

const PORTS = {
  client: 18008,
  federation: 18448,
  synapse_client: 28008,
  synapse_federation: 28448,
  policy_module: 19100,
  bridge: 19200,
  bridge_interop: 19210,
};
const POSTGRES = { type: "postgres", host: "/run/postgresql", user: "synapse", database: "synapse" };
const WORKER_PORTS = { replication: 19093, redis: 16379, first_worker: 19110 };

function deployment(org: Record<string, unknown>) {
  return parseConfig(
    DeploymentSchema,
    {
      data_dir: mkdtempSync(join(tmpdir(), "medmesh-workers-")),
      organisations: [{ id: "hospital-a", name: "Hospital A", ports: PORTS, ...org }],
    },
    "test deployment",
  );
}

type Listener = { port: number; resources: { names: string[] }[] };
type Homeserver = {
  listeners: Listener[];
  instance_map: Record<string, { host: string; port: number }>;
  stream_writers: Record<string, string[]>;
  redis: { enabled: boolean; host: string; port: number };
  federation_sender_instances: string[];
  enable_media_repo: boolean;
  media_instance_running_background_jobs: string;
  notify_appservices_from_worker: string;
  worker_replication_secret: string;
  database: { args: { cp_max: number } };
};
type Worker = { worker_app: string; worker_name: string; worker_listeners: Listener[] };
const yaml = (file: string): unknown => parseYaml(readFileSync(file, "utf8"));

describe("workers in the deployment config", () => {
  it("refuses workers on SQLite, naming the field", () => {
    expect(() => deployment({ workers: { ports: WORKER_PORTS } })).toThrow(
      /organisations\.0\.workers: Synapse workers share one database and need PostgreSQL/,
    );
  });

  it("refuses a stream writer named twice, an unknown one, and two writers of a single-writer stream", () => {
    expect(() =>
      deployment({
        database: POSTGRES,
        workers: {
          ports: WORKER_PORTS,
          event_persister: 2,
          stream_writers: {
            events: ["event_persister1", "event_persister1"],
            typing: ["generic1", "generic2"],
            to_device: ["generic9"],
            presence: ["federation_sender1"],
          },
        },
      }),
    ).toThrow(
      new RegExp(
        [
          "organisations\\.0\\.workers\\.stream_writers\\.events\\.1: stream writer 'event_persister1' is named twice",
          "organisations\\.0\\.workers\\.stream_writers\\.typing: the typing stream has exactly one writer",
          "organisations\\.0\\.workers\\.stream_writers\\.to_device\\.0: no worker is named 'generic9'",
          "organisations\\.0\\.workers\\.stream_writers\\.presence\\.0: 'federation_sender1' is a federation_sender worker",
        ].join("[\\s\\S]*"),
      ),
    );
  });

  it("refuses a worker port that clashes with another port, naming both fields", () => {
    // Six workers from 19098 take 19098..19103: 19100 is the policy module's.
    expect(() =>
      deployment({ database: POSTGRES, workers: { ports: { ...WORKER_PORTS, first_worker: 19098 } } }),
    ).toThrow(
      /organisations\.0\.workers\.ports\.first_worker: port 19100 on 127\.0\.0\.1 is already used by organisations\.0\.ports\.policy_module/,
    );
    expect(() =>
      deployment({ database: POSTGRES, workers: { ports: { ...WORKER_PORTS, redis: 18008 } } }),
    ).toThrow(/organisations\.0\.workers\.ports\.redis: port 18008 on 127\.0\.0\.1 is already used/);
  });
});

describe("generated worker topology", () => {
  const topology = {
    ports: WORKER_PORTS,
    generic: 2,
    stream_writers: { typing: ["generic1"], to_device: ["generic2"], receipts: ["generic1", "generic2"] },
  };

  it("writes the shared settings, every worker's config, and the proxy's routing table", async () => {
    const net = await generateNetwork(deployment({ database: POSTGRES, workers: topology }), "/");
    const g = net.organisations[0]!;
    const hs = yaml(g.paths.homeserverYaml) as Homeserver;
    expect(hs.listeners.find((l) => l.port === 19093)?.resources[0]?.names).toEqual(["replication"]);
    expect(Object.keys(hs.instance_map)).toEqual([
      "main",
      "generic1",
      "generic2",
      "event_persister1",
      "federation_sender1",
      "media_repository1",
      "appservice1",
    ]);
    expect(hs.stream_writers).toEqual({
      events: ["event_persister1"],
      typing: ["generic1"],
      to_device: ["generic2"],
      receipts: ["generic1", "generic2"],
    });
    expect(hs.redis).toEqual({ enabled: true, host: "127.0.0.1", port: 16379 });
    expect(hs.federation_sender_instances).toEqual(["federation_sender1"]);
    expect(hs.enable_media_repo).toBe(false);
    expect(hs.media_instance_running_background_jobs).toBe("media_repository1");
    expect(hs.notify_appservices_from_worker).toBe("appservice1");
    expect(hs.worker_replication_secret.length).toBeGreaterThan(20);
    expect(hs.database.args.cp_max).toBe(5); // seven pools within PostgreSQL's 100 connections
    expect(g.workers?.workers.map((w) => [w.spec.name, w.spec.port, w.app])).toEqual([
      ["generic1", 19110, "synapse.app.generic_worker"],
      ["generic2", 19111, "synapse.app.generic_worker"],
      ["event_persister1", 19112, "synapse.app.generic_worker"],
      ["federation_sender1", 19113, "synapse.app.generic_worker"],
      ["media_repository1", 19114, "synapse.app.media_repository"],
      ["appservice1", 19115, "synapse.app.generic_worker"],
    ]);
    const pm = PolicyModuleConfigSchema.parse(yaml(g.paths.policyModuleConfig));
    expect(pm.synapse_admin?.media_url).toBe("http://127.0.0.1:19114");
    expect(pm.proxy?.workers.length).toBeGreaterThan(50);
  });

  it("routes every pattern to a process the generated config runs for it", async () => {
    // Every stream that has endpoints on a worker, so that every entry of the data is routed.
    const everything = {
      ports: WORKER_PORTS,
      stream_writers: Object.fromEntries(STREAMS.filter((s) => s !== "events").map((s) => [s, ["generic2"]])),
    };
    const g = (await generateNetwork(deployment({ database: POSTGRES, workers: everything }), "/"))
      .organisations[0]!;
    const hs = yaml(g.paths.homeserverYaml) as Homeserver;
    const byPort = new Map(
      (g.workers?.workers ?? []).map((w) => {
        const cfg = yaml(w.configFile) as Worker;
        expect(cfg.worker_name).toBe(w.spec.name);
        expect(cfg.worker_app).toBe(w.app);
        const listener = cfg.worker_listeners[0]!;
        // instance_map points at the same listener, which serves replication.
        expect(hs.instance_map[cfg.worker_name]?.port).toBe(listener.port);
        expect(listener.resources[0]?.names).toContain("replication");
        return [listener.port, { name: cfg.worker_name, resources: listener.resources[0]?.names ?? [] }];
      }),
    );
    const routes = PolicyModuleConfigSchema.parse(yaml(g.paths.policyModuleConfig)).proxy?.workers ?? [];
    for (const entry of WORKER_ROUTES) {
      const resolved = routes.filter((r) => r.name === entry.name);
      // Every pattern of every entry is routed in this topology, in the data's order.
      expect(
        resolved.map((r) => r.pattern),
        entry.name,
      ).toEqual(entry.patterns);
      for (const r of resolved) {
        for (const upstream of r.upstreams) {
          const worker = byPort.get(Number(new URL(upstream).port));
          expect(worker, `${r.pattern} → ${upstream}`).toBeDefined();
          const needed =
            "kind" in entry.target && entry.target.kind === "media_repository" ? "media" : r.listener;
          expect(worker?.resources, `${r.pattern} → ${worker?.name ?? ""}`).toContain(needed);
          if ("stream" in entry.target) {
            expect(hs.stream_writers[entry.target.stream], r.pattern).toContain(worker?.name);
          }
        }
      }
    }
  });

  it("leaves a stream's endpoints on the main process while the main process writes it", async () => {
    const g = (
      await generateNetwork(deployment({ database: POSTGRES, workers: { ports: WORKER_PORTS } }), "/")
    ).organisations[0]!;
    const routes = PolicyModuleConfigSchema.parse(yaml(g.paths.policyModuleConfig)).proxy?.workers ?? [];
    const names = new Set(routes.map((r) => r.name));
    for (const stream of ["typing", "to_device", "account_data", "presence", "push_rules"]) {
      expect(names.has(stream), stream).toBe(false);
    }
    expect(names.has("sync")).toBe(true);
    // Without workers there is no routing table at all.
    const single = (await generateNetwork(deployment({}), "/")).organisations[0]!;
    expect(PolicyModuleConfigSchema.parse(yaml(single.paths.policyModuleConfig)).proxy?.workers).toEqual([]);
  });
});
