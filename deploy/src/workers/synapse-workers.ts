import { join } from "node:path";
import { streamWriters, workerList, type WorkerSpec, type WorkersConfig } from "../config/workers-schema.ts";
import { logConfig } from "../synapse/homeserver-config.ts";

/** The Synapse application each kind of worker runs. */
export const WORKER_APPS: Record<WorkerSpec["kind"], string> = {
  generic: "synapse.app.generic_worker",
  event_persister: "synapse.app.generic_worker",
  federation_sender: "synapse.app.generic_worker",
  media_repository: "synapse.app.media_repository",
  appservice: "synapse.app.generic_worker",
};

/**
 * The resources of a worker's one HTTP listener. `replication` on every worker: instance_map
 * lists them all, so any of them can be made a stream writer without another listener.
 */
export function workerResources(kind: WorkerSpec["kind"]): string[] {
  if (kind === "generic") return ["client", "federation", "replication"];
  if (kind === "media_repository") return ["media", "replication"];
  return ["replication"];
}

/** The host names Synapse's processes reach each other and Redis at. */
export interface WorkerHosts {
  main: string;
  redis: string;
  worker(name: string): string;
}

/** All on one host (the local runner), or each in its container (compose service names). */
export function workerHosts(container: { synapse: string; redis: string } | undefined): WorkerHosts {
  if (!container) return { main: "127.0.0.1", redis: "127.0.0.1", worker: () => "127.0.0.1" };
  return {
    main: container.synapse,
    redis: container.redis,
    worker: (name) => workerService(container.synapse, name),
  };
}

/** A worker's compose service (and host) name: `synapse-generic1`, `synapse-event-persister1`. */
export function workerService(synapse: string, name: string): string {
  return `${synapse}-${name.replaceAll("_", "-")}`;
}

export interface WorkerFiles {
  spec: WorkerSpec;
  app: string;
  configFile: string;
  logConfig: string;
  logFile: string;
}

export function workerFiles(synapseDir: string, w: WorkersConfig): WorkerFiles[] {
  const dir = join(synapseDir, "workers");
  return workerList(w).map((spec) => ({
    spec,
    app: WORKER_APPS[spec.kind],
    configFile: join(dir, `${spec.name}.yaml`),
    logConfig: join(dir, `${spec.name}.log.config`),
    logFile: join(dir, `${spec.name}.log`),
  }));
}

/**
 * What the shared homeserver.yaml gains with workers: the main process's replication listener,
 * every process in instance_map, the stream writers, Redis, and the jobs moved off the main
 * process (federation sending, media, appservice transactions).
 */
export function sharedWorkerConfig(opts: {
  workers: WorkersConfig;
  /** Where the processes reach each other (loopback, or the container network). */
  hosts: WorkerHosts;
  bindAddress: string;
  replicationSecret: string;
}): { listener: Record<string, unknown>; config: Record<string, unknown> } {
  const { workers: w, hosts } = opts;
  const list = workerList(w);
  const names = (kind: WorkerSpec["kind"]) => list.filter((x) => x.kind === kind).map((x) => x.name);
  const media = names("media_repository")[0];
  const appservice = names("appservice")[0];
  const senders = names("federation_sender");
  return {
    listener: {
      port: w.ports.replication,
      bind_addresses: [opts.bindAddress],
      type: "http",
      tls: false,
      resources: [{ names: ["replication"], compress: false }],
    },
    config: {
      instance_map: {
        main: { host: hosts.main, port: w.ports.replication },
        ...Object.fromEntries(list.map((x) => [x.name, { host: hosts.worker(x.name), port: x.port }])),
      },
      stream_writers: streamWriters(w),
      redis: { enabled: true, host: hosts.redis, port: w.ports.redis },
      // The replication API has no other authentication; it stays on loopback as well.
      worker_replication_secret: opts.replicationSecret,
      ...(senders.length ? { federation_sender_instances: senders } : {}),
      ...(media ? { enable_media_repo: false, media_instance_running_background_jobs: media } : {}),
      ...(appservice ? { notify_appservices_from_worker: appservice } : {}),
    },
  };
}

/** One worker's own config file, read after homeserver.yaml (and the federation whitelist). */
export function workerConfig(f: WorkerFiles, bindAddress: string): Record<string, unknown> {
  return {
    worker_app: f.app,
    worker_name: f.spec.name,
    worker_listeners: [
      {
        type: "http",
        port: f.spec.port,
        bind_addresses: [bindAddress],
        tls: false,
        x_forwarded: true,
        resources: [{ names: workerResources(f.spec.kind), compress: false }],
      },
    ],
    worker_log_config: f.logConfig,
  };
}

export function workerLogConfig(f: WorkerFiles): Record<string, unknown> {
  return logConfig(f.logFile);
}
