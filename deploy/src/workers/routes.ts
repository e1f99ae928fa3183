import { WORKER_ROUTES, type WorkerRoute } from "@medmesh/policy-module";
import { streamWriters, workerList, type WorkerSpec, type WorkersConfig } from "../config/workers-schema.ts";

export interface ResolvedRoute {
  name: string;
  listener: "client" | "federation";
  methods?: string[];
  pattern: string;
  upstreams: string[];
  balance: WorkerRoute["balance"];
}

/**
 * The proxy's routing table for a topology: each entry of WORKER_ROUTES whose target runs as a
 * worker, one route per pattern, in the data file's order. An entry whose target is the main
 * process (a stream it still writes, no generic workers) is left out: unrouted requests go there.
 */
export function workerRouting(w: WorkersConfig, url: (worker: WorkerSpec) => string): ResolvedRoute[] {
  const list = workerList(w);
  const writers = streamWriters(w);
  const out: ResolvedRoute[] = [];
  for (const r of WORKER_ROUTES) {
    const targets =
      "stream" in r.target
        ? (writers[r.target.stream] ?? []).map((n) => list.find((x) => x.name === n))
        : list.filter((x) => "kind" in r.target && x.kind === r.target.kind);
    const upstreams = targets.flatMap((x) => (x ? [url(x)] : []));
    if (!upstreams.length) continue;
    for (const pattern of r.patterns) {
      out.push({
        name: r.name,
        listener: r.listener,
        ...(r.methods ? { methods: [...r.methods] } : {}),
        pattern,
        upstreams,
        balance: r.balance,
      });
    }
  }
  return out;
}
