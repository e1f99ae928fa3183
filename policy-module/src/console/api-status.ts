import type { SynapseAdmin } from "@medmesh/common";
import type { Knex } from "knex";
import type { Route } from "../proxy/index.ts";
import type { SweepHistory } from "../retention/index.ts";
import type { TrustStatus } from "../trust/index.ts";
import type { AuditQuery } from "./audit-query.ts";
import { consoleRoute, json, type ApiDeps } from "./http.ts";

export interface StatusDeps extends ApiDeps {
  admin: SynapseAdmin;
  knex: Knex;
  query: AuditQuery;
  trust: () => TrustStatus | undefined;
  retentionPolicy: { enabled: boolean; default_days: number; min_days: number };
  retentionIndex: () => Promise<{ indexed: number; waiting: number; kept: number } | undefined>;
  reviewsWaiting: () => Promise<number | undefined>;
  sweeps: SweepHistory;
  /** The bridge's internal listener, whose /health the page shows. */
  bridgeUrl: string | undefined;
  /** A signed request to a trusted peer (its attestation keys): whether it answers, and how fast. */
  probePeer: (server: string) => Promise<unknown>;
}

const timed = async <T>(
  f: () => Promise<T>,
): Promise<{ ok: boolean; ms: number; error?: string; value?: T }> => {
  const start = performance.now();
  try {
    const value = await f();
    return { ok: true, ms: Math.round(performance.now() - start), value };
  } catch (err) {
    return { ok: false, ms: Math.round(performance.now() - start), error: (err as Error).message };
  }
};

/** What the services already know, in one answer for the status page. */
export function statusRoutes(d: StatusDeps): Route[] {
  return [
    consoleRoute(d, "GET", "/status", "status.read", async () => {
      const [store, synapse, index, reviews] = await Promise.all([
        timed(() => d.knex.raw("SELECT 1")),
        timed(() => d.admin.request<{ server_version: string }>("GET", "/_synapse/admin/v1/server_version")),
        timed(d.retentionIndex),
        timed(d.reviewsWaiting),
      ]);
      const bridge = d.bridgeUrl
        ? await timed(async () => {
            const res = await fetch(new URL("/health", d.bridgeUrl), { signal: AbortSignal.timeout(5000) });
            if (!res.ok) throw new Error(`/health answered ${String(res.status)}`);
          })
        : undefined;
      const sweeps = await d.query.page({ action: "retention." }, 20);
      const history = await d.sweeps.recent(30);
      const ownPeriod = await d
        .knex<{ room_id: string; period_ms: string | number }>("retention_rooms")
        .whereNotNull("period_ms")
        .orderBy("room_id")
        .limit(50)
        .select("room_id", "period_ms");
      const trust = d.trust();
      const peers = (trust?.servers ?? []).filter((s) => s !== d.serverName);
      const reachability = await Promise.all(
        peers.map(async (server) => {
          const r = await timed(() => d.probePeer(server));
          return { server, ok: r.ok, ms: r.ms, ...(r.error ? { error: r.error } : {}) };
        }),
      );
      return json({
        server_name: d.serverName,
        trust: trust
          ? {
              open_federation: false,
              networks: trust.networks,
              organisations: trust.servers,
              sources: trust.sources,
              reachability,
            }
          : { open_federation: true, networks: [], organisations: [], sources: [], reachability: [] },
        retention: {
          policy: d.retentionPolicy,
          index: index.value ?? null,
          rooms_with_own_period: ownPeriod.map((r) => ({
            room_id: r.room_id,
            days: Math.round((Number(r.period_ms) / 86_400_000) * 10) / 10,
          })),
          sweeps: history,
          recent: sweeps.records.map((r) => ({
            at: r.at,
            action: r.action,
            object: r.object,
            outcome: r.outcome,
          })),
        },
        verification: { reviews_waiting: reviews.value ?? null },
        health: {
          store: { ok: store.ok, ms: store.ms, ...(store.error ? { error: store.error } : {}) },
          synapse: {
            ok: synapse.ok,
            ms: synapse.ms,
            version: synapse.value?.server_version ?? null,
            ...(synapse.error ? { error: synapse.error } : {}),
          },
          bridge: bridge
            ? { ok: bridge.ok, ms: bridge.ms, ...(bridge.error ? { error: bridge.error } : {}) }
            : null,
        },
      });
    }),
  ];
}
