import { createHash } from "node:crypto";
import type { Knex } from "knex";
import { canonicalJson } from "../crypto/canonical-json.ts";

/**
 * One audit record (NEN 7513 fields): who did what, to which object, on whose behalf, when, with
 * what outcome. Never message content, documents or registration numbers.
 */
export interface AuditEntry {
  actor: string;
  action: string;
  object: string;
  outcome: string;
  on_behalf_of?: string;
  details?: Record<string, unknown>;
}

export interface AuditRecord extends Required<Omit<AuditEntry, "on_behalf_of">> {
  seq: number;
  at: string;
  on_behalf_of: string | null;
  hash: string;
}

export interface AuditLog {
  record(entry: AuditEntry, now?: Date): Promise<void>;
  /** Records matching all given fields, oldest first. */
  find(
    filter: Partial<Pick<AuditRecord, "actor" | "action" | "object" | "on_behalf_of">>,
  ): Promise<AuditRecord[]>;
  /** Recomputes the hash chain; the first record that does not fit is where someone edited or deleted. */
  verify(): Promise<{ ok: true; records: number } | { ok: false; brokenAt: number }>;
}

const GENESIS = "0".repeat(64);
// Serialises writers across instances: each entry's hash needs the previous one.
const AUDIT_LOCK = 7_350_002;

const hashOf = (prev: string, e: Omit<AuditRecord, "seq" | "hash">): string =>
  createHash("sha256").update(prev).update(canonicalJson(e)).digest("hex");

/** The tamper-evident audit log: an append-only table whose rows form a SHA-256 hash chain. */
export function createAuditLog(knex: Knex): AuditLog {
  const toRecord = (r: Record<string, unknown>): AuditRecord => ({
    seq: Number(r.seq),
    at: new Date(r.at as string).toISOString(),
    actor: r.actor as string,
    on_behalf_of: (r.on_behalf_of as string | null) ?? null,
    action: r.action as string,
    object: r.object as string,
    outcome: r.outcome as string,
    details: r.details as Record<string, unknown>,
    hash: r.hash as string,
  });
  const content = (r: AuditRecord): Omit<AuditRecord, "seq" | "hash"> => ({
    at: r.at,
    actor: r.actor,
    on_behalf_of: r.on_behalf_of,
    action: r.action,
    object: r.object,
    outcome: r.outcome,
    details: r.details,
  });

  return {
    async record(entry, now = new Date()) {
      await knex.transaction(async (trx) => {
        await trx.raw("SELECT pg_advisory_xact_lock(?)", [AUDIT_LOCK]);
        const last: { hash: string } | undefined = await trx("audit_log")
          .orderBy("seq", "desc")
          .first("hash");
        const prev = last?.hash ?? GENESIS;
        const row = {
          at: now.toISOString(),
          actor: entry.actor,
          on_behalf_of: entry.on_behalf_of ?? null,
          action: entry.action,
          object: entry.object,
          outcome: entry.outcome,
          details: entry.details ?? {},
        };
        await trx("audit_log").insert({
          ...row,
          details: JSON.stringify(row.details),
          prev_hash: prev,
          hash: hashOf(prev, row),
        });
      });
    },
    async find(filter) {
      const rows = (await knex("audit_log").where(filter).orderBy("seq")) as Record<string, unknown>[];
      return rows.map(toRecord);
    },
    async verify() {
      const rows = (await knex("audit_log").orderBy("seq")) as Record<string, unknown>[];
      let prev = GENESIS;
      for (const row of rows) {
        const r = toRecord(row);
        if (row.prev_hash !== prev || hashOf(prev, content(r)) !== r.hash)
          return { ok: false, brokenAt: r.seq };
        prev = r.hash;
      }
      return { ok: true, records: rows.length };
    },
  };
}
