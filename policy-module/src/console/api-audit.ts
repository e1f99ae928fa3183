import { auditRecordHash } from "@medmesh/common";
import { Refusal, type ProxyContext, type Route } from "../proxy/index.ts";
import type { AuditService } from "../audit/index.ts";
import type { AuditFilter, AuditQuery, AuditRow } from "./audit-query.ts";
import { audited, consoleRoute, json, type ApiDeps } from "./http.ts";

export interface AuditDeps extends ApiDeps {
  query: AuditQuery;
  service: () => AuditService | undefined;
}

const EXPORT_MAX = 100_000;

export function filterOf(ctx: ProxyContext): AuditFilter {
  const p = ctx.url.searchParams;
  const f: AuditFilter = {};
  for (const k of ["actor", "action", "object"] as const) {
    const v = p.get(k)?.trim();
    if (v) f[k] = v;
  }
  for (const k of ["from", "to"] as const) {
    const v = p.get(k)?.trim();
    if (!v) continue;
    const t = new Date(v);
    if (Number.isNaN(t.getTime())) throw new Refusal(400, "M_INVALID_PARAM", `${k} must be a date-time`);
    f[k] = t.toISOString();
  }
  const before = p.get("before");
  if (before) {
    const n = Number(before);
    if (!Number.isInteger(n) || n < 1)
      throw new Refusal(400, "M_INVALID_PARAM", "before must be a record's seq");
    f.before = n;
  }
  return f;
}

const recomputed = (r: AuditRow): string => auditRecordHash(r.prev_hash, r);

/**
 * The proof for an exported range: every record carries its prev_hash and hash, so each can be
 * recomputed (SHA-256 over prev_hash and the canonical JSON of the record); consecutive records
 * link when one's prev_hash is the previous one's hash. Checked here before it is handed out.
 */
export function proofOf(records: readonly AuditRow[], f: AuditFilter) {
  let hashesOk = 0;
  let links = 0;
  let linksOk = 0;
  records.forEach((r, i) => {
    if (recomputed(r) === r.hash) hashesOk++;
    const prev = records[i - 1];
    if (prev && r.seq === prev.seq + 1) {
      links++;
      if (r.prev_hash === prev.hash) linksOk++;
    }
  });
  return {
    algorithm:
      "sha256(prev_hash || canonical_json({at, actor, on_behalf_of, action, object, outcome, details}))",
    first_seq: records[0]?.seq ?? null,
    last_seq: records.at(-1)?.seq ?? null,
    first_prev_hash: records[0]?.prev_hash ?? null,
    last_hash: records.at(-1)?.hash ?? null,
    records: records.length,
    hashes_ok: hashesOk,
    consecutive_links: links,
    links_ok: linksOk,
    // Only a time range is a contiguous part of the chain; other filters pick records out of it.
    contiguous: !f.actor && !f.action && !f.object,
    filter: f,
  };
}

const csvCell = (v: unknown): string => {
  const s = typeof v === "string" ? v : v === null ? "" : JSON.stringify(v);
  return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
};
const COLUMNS = [
  "seq",
  "at",
  "actor",
  "on_behalf_of",
  "action",
  "object",
  "outcome",
  "details",
  "prev_hash",
  "hash",
] as const;

export function auditRoutes(d: AuditDeps): Route[] {
  return [
    consoleRoute(d, "GET", "/audit", "audit.read", async (ctx) => {
      const limit = Math.min(Math.max(Number(ctx.url.searchParams.get("limit") ?? 50) || 50, 1), 500);
      return json(await d.query.page(filterOf(ctx), limit));
    }),
    consoleRoute(d, "GET", "/audit/export", "audit.read", async (ctx, actor) => {
      const format = ctx.url.searchParams.get("format") ?? "json";
      if (format !== "json" && format !== "csv")
        throw new Refusal(400, "M_INVALID_PARAM", 'format must be "json" or "csv"');
      const f = filterOf(ctx);
      const records = await d.query.range(f, EXPORT_MAX + 1);
      const truncated = records.length > EXPORT_MAX;
      const kept = records.slice(0, EXPORT_MAX);
      const proof = { ...proofOf(kept, f), truncated };
      await audited(d, actor, "audit_exported", "audit_log", "ok", { format, records: kept.length });
      const disposition = { "content-disposition": `attachment; filename="medmesh-audit.${format}"` };
      if (format === "json") return json({ records: kept, proof }, 200, disposition);
      const lines = [COLUMNS.join(",")];
      for (const r of kept) lines.push(COLUMNS.map((c) => csvCell(r[c])).join(","));
      // The proof travels with the rows: one last comment line (CSV readers skip or show it).
      lines.push(`# proof: ${JSON.stringify(proof)}`);
      return {
        status: 200,
        body: Buffer.from(lines.join("\n") + "\n"),
        contentType: "text/csv; charset=utf-8",
        headers: { "cache-control": "no-store", ...disposition },
      };
    }),
    consoleRoute(d, "POST", "/audit/verify", "audit.read", async (_ctx, actor) => {
      const service = d.service();
      if (!service) throw new Refusal(503, "M_UNAVAILABLE", "The audit service is still starting");
      const report = await service.verify();
      await audited(d, actor, "audit_verified", "audit_log", report.ok ? "intact" : "broken", {
        records: report.records,
      });
      return json(report);
    }),
  ];
}
