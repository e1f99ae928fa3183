import type { JsonWebKey } from "node:crypto";
import type { Logger } from "pino";
import { Histogram, type Registry } from "prom-client";
import { z } from "zod";
import type { LocalClinicians, VerifiedClinician, Verification } from "../identity/verification.ts";
import { Refusal, type DirectoryGate, type OwnResponse, type ProxyContext } from "../proxy/index.ts";
import { cliniciansFromBundle, practitionerBundle } from "./fhir.ts";
import {
  departmentsFromBundle,
  HEALTHCARE_SERVICE_PATH,
  searchDepartments,
  type DepartmentEntry,
} from "../departments/fhir.ts";
import { PeerError } from "./peer-client.ts";
import type { PeerClient } from "./peer-client.ts";
import { createSearchIndex } from "./search-index.ts";

export const DirectoryConfigSchema = z
  .object({
    peer_timeout_ms: z
      .number()
      .int()
      .positive()
      .default(1500)
      .describe(
        "How long a directory search waits for other organisations before answering with local results.",
      ),
    remote_cache_seconds: z
      .number()
      .positive()
      .default(300)
      .describe("How long another organisation's answer about one of its users is remembered."),
  })
  .describe("Directory of verified clinicians across the trusted organisations.");
export type DirectoryConfig = z.output<typeof DirectoryConfigSchema>;

export const FHIR_PATH = "/_medmesh/fhir/r4/Practitioner";

export interface Directory extends DirectoryGate, Verification {
  /** Answers a trusted peer's FHIR search (its signature is checked by the peer API). */
  serveFhir(ctx: ProxyContext): OwnResponse;
}

/**
 * The verified-clinician directory. A verified clinician searching gets this organisation's
 * verified clinicians plus, through the trust list, every other organisation's (their FHIR
 * Practitioner search, merged with a short timeout: a slow peer costs its results, not the
 * answer). Anyone else gets Synapse's own directory, which lists only people they share a room with.
 */
export function createDirectory(deps: {
  serverName: string;
  config: DirectoryConfig;
  clinicians: LocalClinicians;
  /** Other organisations' clinicians, by their signed attestations. */
  remote: Verification;
  trust: { servers(): string[]; attestationKeys(server: string): JsonWebKey[] };
  peers: PeerClient;
  log: Logger;
  metrics: Registry;
  /** This organisation's department accounts, listed with their own entries (departments/). */
  departments?: () => readonly DepartmentEntry[];
}): Directory {
  let built = { version: -1, index: createSearchIndex([]) };
  const index = (): ReturnType<typeof createSearchIndex> => {
    const version = deps.clinicians.version();
    if (built.version !== version) built = { version, index: createSearchIndex(deps.clinicians.all()) };
    return built.index;
  };
  const remote = new Map<string, { clinician: VerifiedClinician | undefined; expires: number }>();
  const searchSeconds = new Histogram({
    name: "medmesh_directory_search_seconds",
    help: "Directory searches answered by MedMesh, by scope (local only, or merged with peers)",
    labelNames: ["scope"] as const,
    buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 1, 2],
    registers: [deps.metrics],
  });

  const peersOf = (): string[] => deps.trust.servers().filter((s) => s !== deps.serverName);
  const serverOf = (userId: string): string => userId.slice(userId.indexOf(":") + 1);

  const remember = (c: VerifiedClinician): void => {
    remote.set(c.user_id, { clinician: c, expires: Date.now() + deps.config.remote_cache_seconds * 1000 });
  };

  const askPeer = async (server: string, query: string): Promise<VerifiedClinician[]> => {
    const bundle = await deps.peers.getJson(server, `${FHIR_PATH}?${query}`, deps.config.peer_timeout_ms);
    const found = cliniciansFromBundle(bundle, server);
    for (const c of found) remember(c);
    return found;
  };

  /** A verified clinician: local from the organisation's list; remote as its organisation says (fail closed). */
  const lookup = async (userId: string): Promise<VerifiedClinician | undefined> => {
    const server = serverOf(userId);
    if (server === deps.serverName) return deps.clinicians.get(userId);
    if (!peersOf().includes(server)) return undefined;
    const hit = remote.get(userId);
    if (hit && hit.expires > Date.now()) return hit.clinician;
    try {
      const found = await askPeer(server, `identifier=${encodeURIComponent(userId)}`);
      const clinician = found.find((c) => c.user_id === userId);
      remote.set(userId, { clinician, expires: Date.now() + deps.config.remote_cache_seconds * 1000 });
      return clinician;
    } catch (err) {
      deps.log.warn(
        { server, error: (err as Error).message },
        "peer directory unreachable; treating user as not verified",
      );
      return undefined;
    }
  };

  const toResult = (c: VerifiedClinician) => ({ user_id: c.user_id, display_name: c.display_name });
  const departmentResult = (e: DepartmentEntry) => ({ ...e, "org.medmesh.kind": "department" });
  /** A peer's departments (FHIR HealthcareService); a peer without them (older MedMesh, 404) has none. */
  const askPeerDepartments = async (server: string, term: string, limit: number) => {
    const query = `name=${encodeURIComponent(term)}&_count=${String(limit)}`;
    const bundle = await deps.peers
      .getJson(server, `${HEALTHCARE_SERVICE_PATH}?${query}`, deps.config.peer_timeout_ms)
      .catch((err: unknown) => {
        if (err instanceof PeerError && err.status === 404) return undefined;
        throw err;
      });
    return departmentsFromBundle(bundle, server);
  };

  return {
    isVerified: (userId) =>
      serverOf(userId) === deps.serverName
        ? deps.clinicians.isVerified(userId)
        : deps.remote.isVerified(userId),

    async search(requester, body) {
      if (!(await deps.clinicians.isVerified(requester.userId))) return undefined; // Synapse: co-members only
      const term = typeof body.search_term === "string" ? body.search_term : "";
      if (!term.trim()) throw new Refusal(400, "M_INVALID_PARAM", "search_term must not be empty");
      const limit = typeof body.limit === "number" && body.limit > 0 ? Math.min(body.limit, 50) : 10;
      const started = process.hrtime.bigint();
      const local = index().search(term, limit);
      const peers = peersOf();
      const answers = await Promise.allSettled(
        peers.map(async (s) => {
          const [clinicians, departments] = await Promise.all([
            askPeer(s, `name=${encodeURIComponent(term)}&_count=${String(limit)}`),
            askPeerDepartments(s, term, limit),
          ]);
          return [...clinicians.map(toResult), ...departments.map(departmentResult)];
        }),
      );
      const results: { user_id: string; display_name: string }[] = [
        ...searchDepartments(deps.departments?.() ?? [], term, limit).map(departmentResult),
        ...local.results.map(toResult),
      ];
      let limited = local.limited;
      answers.forEach((a, i) => {
        if (a.status === "fulfilled") results.push(...a.value);
        else {
          limited = true; // a slow or failing peer: its results are missing
          deps.log.warn(
            { server: peers[i], error: (a.reason as Error).message },
            "peer directory search failed",
          );
        }
      });
      searchSeconds.observe(
        { scope: peers.length ? "merged" : "local" },
        Number(process.hrtime.bigint() - started) / 1e9,
      );
      return {
        status: 200,
        body: { limited: limited || results.length > limit, results: results.slice(0, limit) },
      };
    },

    async profile(requester, userId, field) {
      if (!(await deps.clinicians.isVerified(requester.userId))) return undefined;
      const clinician = await lookup(userId);
      if (!clinician) return undefined; // Synapse: only people the requester shares a room with
      if (field === "avatar_url") return undefined;
      return { status: 200, body: { displayname: clinician.display_name } };
    },

    serveFhir(ctx) {
      const q = ctx.url.searchParams;
      const count = Math.min(Number(q.get("_count") ?? 20) || 20, 50);
      const identifier = q.get("identifier");
      const name = q.get("name");
      let found: VerifiedClinician[];
      if (identifier !== null) {
        const c = deps.clinicians.get(identifier.replace(/^.*\|/, ""));
        found = c ? [c] : [];
      } else if (name !== null && name.trim()) {
        found = index().search(name, count).results;
      } else {
        throw new Refusal(400, "M_INVALID_PARAM", "Search by name or identifier");
      }
      return { status: 200, body: practitionerBundle(found) };
    },
  };
}
