import type { JsonWebKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile, rename, writeFile } from "node:fs/promises";
import type { DocumentStore } from "@medmesh/common";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { stringify } from "yaml";
import type { TrustView } from "../proxy/index.ts";
import type { TrustConfig } from "./config.ts";
import {
  combineTrustLists,
  verifyTrustList,
  type CombinedTrust,
  type VerifiedTrustList,
} from "./trust-list.ts";

export interface TrustStatus {
  servers: string[];
  networks: { network: string; sequence: number; expires_at: string }[];
  sources: { source: string; ok: boolean; error?: string; checked_at?: string }[];
}

export interface TrustManager extends TrustView {
  /** Fetches and verifies every list now; a failing source keeps its last good list. */
  refresh(): Promise<void>;
  status(): TrustStatus;
  attestationKeys(serverName: string): JsonWebKey[];
  /** Whether the trust list names the server an organisation of insured persons (TI-M ePA). */
  insuredPersons(serverName: string): boolean;
  stop(): void;
}

export interface TrustManagerDeps {
  serverName: string;
  log: Logger;
  metrics: Registry;
  documents: DocumentStore;
  /** Called after the Synapse whitelist fragment changed (e.g. the local runner restarts Synapse). */
  onWhitelistChanged?: () => Promise<void>;
}

/**
 * Keeps the organisation's view of its networks' signed trust lists: verifies each against the
 * operators' keys, refuses a list older than the one in force (rollback), keeps the last good
 * list (also across restarts, in the store) when a new one is invalid or unreachable, and applies
 * changes without a restart. Until a first good list is known nothing federates (fail closed).
 */
export async function createTrustManager(config: TrustConfig, deps: TrustManagerDeps): Promise<TrustManager> {
  const operatorKeys = config.operator_keys.flatMap(readKeys);
  const sources = config.lists.map((s) => ("file" in s ? `file:${s.file}` : s.url));
  const current = new Map<string, VerifiedTrustList>();
  const sourceState = new Map<string, TrustStatus["sources"][number]>();
  let combined: CombinedTrust = combineTrustLists([]);

  const refreshes = new Counter({
    name: "medmesh_trust_list_refresh_total",
    help: "Trust list fetches, by source and outcome (ok, invalid, unreachable, rollback)",
    labelNames: ["source", "outcome"] as const,
    registers: [deps.metrics],
  });
  const stale = new Gauge({
    name: "medmesh_trust_list_stale",
    help: "1 while a source's last fetch failed and its last good list (if any) stays in force",
    labelNames: ["source"] as const,
    registers: [deps.metrics],
  });
  const trusted = new Gauge({
    name: "medmesh_trust_list_servers",
    help: "Servers currently trusted through the combined trust lists",
    registers: [deps.metrics],
  });
  const sequence = new Gauge({
    name: "medmesh_trust_list_sequence",
    help: "Sequence number of the list in force, by network",
    labelNames: ["network"] as const,
    registers: [deps.metrics],
  });

  const accept = (source: string, list: VerifiedTrustList, now: Date): boolean => {
    if (new Date(list.payload.expires_at) <= now) return false;
    const previous = current.get(source);
    if (previous && list.payload.sequence < previous.payload.sequence) {
      throw new RollbackError(
        `sequence ${String(list.payload.sequence)} is older than the list in force (${String(previous.payload.sequence)})`,
      );
    }
    current.set(source, list);
    return true;
  };

  const recombine = async (now: Date): Promise<void> => {
    for (const [source, list] of current) {
      // An expired list stops counting even when no newer one could be fetched.
      if (new Date(list.payload.expires_at) <= now) {
        deps.log.warn(
          { source, network: list.payload.network },
          "trust list expired; its servers are no longer trusted",
        );
        current.delete(source);
      }
    }
    const next = combineTrustLists([...current.values()]);
    const changed = next.servers().join(",") !== combined.servers().join(",");
    // Synapse's second line first, so that once the proxy admits a server Synapse does too.
    if (changed) await writeWhitelist(next.servers());
    combined = next;
    sequence.reset();
    for (const l of current.values()) sequence.set({ network: l.payload.network }, l.payload.sequence);
    trusted.set(combined.servers().length);
    if (changed) deps.log.info({ servers: combined.servers() }, "trust list in force changed");
  };

  const writeWhitelist = async (servers: string[]): Promise<void> => {
    const file = config.synapse_whitelist_file;
    if (!file) return;
    const content = synapseWhitelistYaml(deps.serverName, servers);
    const existing = await readFile(file, "utf8").catch(() => "");
    if (existing === content) return;
    await writeFile(`${file}.tmp`, content);
    await rename(`${file}.tmp`, file);
    if (deps.onWhitelistChanged) {
      deps.log.info({ file }, "Synapse federation_domain_whitelist updated");
      await deps.onWhitelistChanged();
    } else {
      deps.log.warn({ file }, "Synapse federation_domain_whitelist updated; restart Synapse to apply it");
    }
  };

  const fetchSource = async (source: string): Promise<string> => {
    if (source.startsWith("file:")) return readFile(source.slice(5), "utf8");
    const res = await fetch(source, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`answered ${String(res.status)}`);
    return res.text();
  };

  const refreshOne = async (source: string, now: Date): Promise<void> => {
    let text: string;
    try {
      text = (await fetchSource(source)).trim();
    } catch (err) {
      fail(source, "unreachable", `unreachable: ${(err as Error).message}`);
      return;
    }
    try {
      const list = verifyTrustList(text, operatorKeys, now);
      accept(source, list, now);
      await deps.documents.put(`trust-list:${source}`, text);
      sourceState.set(source, { source, ok: true, checked_at: now.toISOString() });
      stale.set({ source }, 0);
      refreshes.inc({ source, outcome: "ok" });
    } catch (err) {
      const outcome = err instanceof RollbackError ? "rollback" : "invalid";
      fail(source, outcome, `${outcome}: ${(err as Error).message}`);
    }
  };

  const fail = (source: string, outcome: string, error: string): void => {
    const kept = current.get(source);
    deps.log.warn(
      { source, error, kept_sequence: kept?.payload.sequence },
      kept
        ? "trust list not updated; the last good list stays in force"
        : "no valid trust list from this source",
    );
    sourceState.set(source, { source, ok: false, error, checked_at: new Date().toISOString() });
    stale.set({ source }, 1);
    refreshes.inc({ source, outcome });
  };

  // The last good lists from before a restart count until something newer is fetched.
  const now = new Date();
  for (const source of sources) {
    const cached = await deps.documents.get(`trust-list:${source}`);
    if (!cached) continue;
    try {
      accept(source, verifyTrustList(cached, operatorKeys, now), now);
    } catch (err) {
      deps.log.warn({ source, error: (err as Error).message }, "stored trust list no longer valid");
    }
  }

  let refreshing: Promise<void> | undefined;
  const refresh = (): Promise<void> => {
    refreshing ??= (async () => {
      const at = new Date();
      for (const source of sources) await refreshOne(source, at);
      await recombine(at);
    })().finally(() => {
      refreshing = undefined;
    });
    return refreshing;
  };
  await refresh();
  const timer = setInterval(() => {
    refresh().catch((err: unknown) => {
      deps.log.error({ err }, "trust list refresh failed");
    });
  }, config.refresh_seconds * 1000);
  timer.unref();

  return {
    isTrusted: (serverName) => serverName === deps.serverName || combined.isTrusted(serverName),
    attestationKeys: (serverName) => combined.attestationKeys(serverName),
    insuredPersons: (serverName) => combined.organisation(serverName)?.insured_persons === true,
    refresh,
    status: () => ({
      servers: combined.servers(),
      networks: [...current.values()].map((l) => ({
        network: l.payload.network,
        sequence: l.payload.sequence,
        expires_at: l.payload.expires_at,
      })),
      sources: sources.map((s) => sourceState.get(s) ?? { source: s, ok: false, error: "not fetched yet" }),
    }),
    stop: () => {
      clearInterval(timer);
    },
  };
}

class RollbackError extends Error {}

/** The Synapse config fragment: federate with exactly the trusted servers (and ourselves). */
export function synapseWhitelistYaml(serverName: string, servers: readonly string[]): string {
  const hosts = [...new Set([serverName, ...servers])].sort();
  return `# Written by the MedMesh policy module from the signed trust list; do not edit.\n${stringify({ federation_domain_whitelist: hosts })}`;
}

function readKeys(file: string): JsonWebKey[] {
  const parsed = JSON.parse(readFileSync(file, "utf8")) as JsonWebKey & { keys?: JsonWebKey[] };
  return parsed.keys ?? [parsed];
}
