import { WORKER_STREAMS } from "@medmesh/policy-module";
import { z } from "zod";

const port = z.number().int().min(1).max(65535);

/** Synapse streams that can be moved off the main process to a worker (Synapse's workers.md). */
export const STREAMS = WORKER_STREAMS;
export type Stream = (typeof STREAMS)[number];
/** Streams Synapse lets several workers write; every other stream has exactly one writer. */
const SHARDED: ReadonlySet<Stream> = new Set(["events", "receipts", "device_lists"]);

export const WORKER_KINDS = [
  "generic",
  "event_persister",
  "federation_sender",
  "media_repository",
  "appservice",
] as const;
export type WorkerKind = (typeof WORKER_KINDS)[number];

const count = (what: string, dflt: number) => z.number().int().min(0).max(16).default(dflt).describe(what);

export const WorkersSchema = z
  .object({
    generic: count(
      "Generic workers: client and federation reads, /sync (sticky per user), event creation.",
      2,
    ),
    event_persister: count("Event persisters: the writers of the events stream.", 1),
    federation_sender: count("Federation senders: outbound federation traffic.", 1),
    media_repository: z
      .number()
      .int()
      .min(0)
      .max(1)
      .default(1)
      .describe("The media repository worker (0 or 1): uploads, downloads, media admin API."),
    appservice: count(
      "The worker that sends appservice transactions (notify_appservices_from_worker; 0 or 1).",
      1,
    ).pipe(z.number().max(1, "at most one worker sends appservice transactions")),
    stream_writers: z
      .partialRecord(z.enum(STREAMS), z.array(z.string().min(1)).min(1))
      .default({})
      .describe(
        "Which workers write which stream, by worker name (generic1, event_persister1, …). events " +
          "defaults to every event persister; the others stay on the main process unless listed.",
      )
      .meta({ examples: [{ events: ["event_persister1"], typing: ["generic1"] }] }),
    ports: z
      .object({
        replication: port.describe("The main process's replication listener (loopback only)."),
        redis: port.describe("Redis, which carries replication between the processes (loopback only)."),
        first_worker: port.describe(
          "The workers' HTTP listeners take consecutive ports from here, in the order generic, " +
            "event_persister, federation_sender, media_repository, appservice.",
        ),
      })
      .describe("TCP ports of the worker topology; none may clash with another port of the deployment.")
      .meta({ examples: [{ replication: 19093, redis: 16379, first_worker: 19110 }] }),
  })
  .describe(
    "Run Synapse as a main process plus workers, with Redis (Synapse's workers.md). Needs " +
      "database.type postgres. The policy proxy routes each request to the worker that serves it.",
  );
export type WorkersConfig = z.output<typeof WorkersSchema>;

export interface WorkerSpec {
  name: string;
  kind: WorkerKind;
  port: number;
}

/** The workers a topology runs, with their names and ports (consecutive from first_worker). */
export function workerList(w: WorkersConfig): WorkerSpec[] {
  const out: WorkerSpec[] = [];
  for (const kind of WORKER_KINDS) {
    for (let n = 1; n <= w[kind]; n++) {
      out.push({ name: `${kind}${String(n)}`, kind, port: w.ports.first_worker + out.length });
    }
  }
  return out;
}

/** Each stream's writers: the configured ones, events defaulting to every event persister. */
export function streamWriters(w: WorkersConfig): Partial<Record<Stream, string[]>> {
  const persisters = workerList(w)
    .filter((x) => x.kind === "event_persister")
    .map((x) => x.name);
  return {
    ...(persisters.length ? { events: persisters } : {}),
    ...w.stream_writers,
  };
}

type Issue = { path: (string | number)[]; message: string };

/** Problems of one organisation's worker topology, with paths relative to the organisation. */
export function workerProblems(
  w: WorkersConfig,
  databaseType: string,
  claimPort: (port: number, path: (string | number)[]) => void,
): Issue[] {
  const issues: Issue[] = [];
  if (databaseType !== "postgres") {
    issues.push({
      path: ["workers"],
      message:
        "Synapse workers share one database and need PostgreSQL: set database.type to postgres, or remove workers",
    });
  }
  const workers = workerList(w);
  const byName = new Map(workers.map((x) => [x.name, x]));
  for (const [stream, writers] of Object.entries(w.stream_writers) as [Stream, string[]][]) {
    const seen = new Set<string>();
    writers.forEach((name, i) => {
      const path = ["workers", "stream_writers", stream, i];
      if (seen.has(name)) {
        issues.push({ path, message: `stream writer '${name}' is named twice for the ${stream} stream` });
      }
      seen.add(name);
      const worker = byName.get(name);
      if (!worker) {
        issues.push({
          path,
          message: `no worker is named '${name}' (this topology runs: ${workers.map((x) => x.name).join(", ") || "none"})`,
        });
      } else if (
        stream === "events"
          ? worker.kind !== "generic" && worker.kind !== "event_persister"
          : worker.kind !== "generic"
      ) {
        issues.push({
          path,
          message:
            stream === "events"
              ? `'${name}' is a ${worker.kind} worker; the events stream is written by event persisters or generic workers`
              : `'${name}' is a ${worker.kind} worker; the ${stream} stream's endpoints need a generic worker as its writer`,
        });
      }
    });
    if (!SHARDED.has(stream) && writers.length > 1) {
      issues.push({
        path: ["workers", "stream_writers", stream],
        message: `the ${stream} stream has exactly one writer in Synapse; ${String(writers.length)} are named`,
      });
    }
  }
  claimPort(w.ports.replication, ["workers", "ports", "replication"]);
  claimPort(w.ports.redis, ["workers", "ports", "redis"]);
  for (const x of workers) claimPort(x.port, ["workers", "ports", "first_worker"]);
  return issues;
}
