import type { Knex } from "knex";

export interface AuditFilter {
  actor?: string;
  action?: string;
  object?: string;
  /** ISO times, inclusive from, exclusive to. */
  from?: string;
  to?: string;
  /** Keyset paging, newest first: records with seq below this. */
  before?: number;
}

export interface AuditRow {
  seq: number;
  at: string;
  actor: string;
  on_behalf_of: string | null;
  action: string;
  object: string;
  outcome: string;
  details: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

const toRow = (r: Record<string, unknown>): AuditRow => ({
  seq: Number(r.seq),
  at: new Date(r.at as string).toISOString(),
  actor: r.actor as string,
  on_behalf_of: (r.on_behalf_of as string | null) ?? null,
  action: r.action as string,
  object: r.object as string,
  outcome: r.outcome as string,
  details: (typeof r.details === "string" ? JSON.parse(r.details) : r.details) as Record<string, unknown>,
  prev_hash: r.prev_hash as string,
  hash: r.hash as string,
});

/** Reads of the audit log for the console: filtered, newest first, paged by seq (indexes: migration 23). */
export function auditQuery(knex: Knex) {
  const filtered = (f: AuditFilter) => {
    const q = knex("audit_log");
    if (f.actor) void q.where("actor", f.actor);
    if (f.object) void q.where("object", f.object);
    // An action filter ending in "." is a prefix: "console." is every console action.
    if (f.action)
      void (f.action.endsWith(".") ? q.where("action", "like", `${f.action}%`) : q.where("action", f.action));
    if (f.from) void q.where("at", ">=", f.from);
    if (f.to) void q.where("at", "<", f.to);
    return q;
  };
  return {
    async page(f: AuditFilter, limit: number): Promise<{ records: AuditRow[]; next_before: number | null }> {
      const q = filtered(f);
      if (f.before !== undefined) void q.where("seq", "<", f.before);
      const rows = (await q.orderBy("seq", "desc").limit(limit + 1)) as Record<string, unknown>[];
      const records = rows.slice(0, limit).map(toRow);
      return { records, next_before: rows.length > limit ? (records.at(-1)?.seq ?? null) : null };
    },
    /** Oldest first, for export; at most `max` records (the caller says when it was cut off). */
    async range(f: AuditFilter, max: number): Promise<AuditRow[]> {
      const rows = (await filtered(f).orderBy("seq", "asc").limit(max)) as Record<string, unknown>[];
      return rows.map(toRow);
    },
  };
}
export type AuditQuery = ReturnType<typeof auditQuery>;
