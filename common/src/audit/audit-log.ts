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

/** A signed statement of the chain's head at some moment (see anchor.ts); verify checks the chain reaches it. */
export interface AnchorPoint {
  seq: number;
  hash: string;
}

export type AuditBreakKind =
  /** A record's content no longer matches its hash, or no longer matches what the next record chained to. */
  | "edited"
  /** Records are gone from the middle (or the start): a record's predecessor is not the one it chained to. */
  | "missing"
  /** The log ends before the anchored record: the newest records were deleted. */
  | "truncated"
  /** The anchored record is gone or differs: records up to it were deleted or edited and the chain re-hashed. */
  | "rewritten"
  /** The anchor itself cannot be trusted (bad signature, unknown key, unreadable), or is missing. */
  | "bad_anchor";

export interface AuditBreak {
  kind: AuditBreakKind;
  /** Where: the first record (or the anchored seq) that does not fit. */
  seq: number;
  message: string;
}

/** What a verification checked, for operators: enough to see that it looked at what they expect. */
export interface AuditReport {
  ok: boolean;
  /** Records checked (all of them when ok). */
  records: number;
  first: { seq: number; at: string } | null;
  /** The chain's head as far as it was checked. */
  last: { seq: number; at: string; hash: string } | null;
  /** Queries made: the table is read in pages, never at once. */
  pages: number;
  break?: AuditBreak;
}

export interface VerifyOptions {
  /** The latest trusted anchor: the chain must contain exactly this record. */
  anchor?: AnchorPoint;
  /**
   * Start at the anchored record instead of the genesis: everything before it is vouched for by
   * the anchor's hash. For the anchorer's check before it signs a new head.
   */
  fromAnchor?: boolean;
  /** Rows per query (default 1000): memory stays bounded by this, whatever the table's size. */
  pageSize?: number;
}

export interface AuditLog {
  record(entry: AuditEntry, now?: Date): Promise<void>;
  /** Records matching all given fields, oldest first. */
  find(
    filter: Partial<Pick<AuditRecord, "actor" | "action" | "object" | "on_behalf_of">>,
  ): Promise<AuditRecord[]>;
  /** The newest record, or undefined when the log is empty. */
  head(): Promise<AuditRecord | undefined>;
  /** Recomputes the hash chain page by page; reports the first place that does not fit. */
  verify(opts?: VerifyOptions): Promise<AuditReport>;
}

/** The "previous hash" of the first record, and the head of an empty log. */
export const GENESIS = "0".repeat(64);
const DEFAULT_PAGE = 1000;
// Serialises writers across instances: each entry's hash needs the previous one.
const AUDIT_LOCK = 7_350_002;

const hashOf = (prev: string, e: Omit<AuditRecord, "seq" | "hash">): string =>
  createHash("sha256").update(prev).update(canonicalJson(e)).digest("hex");

/**
 * A record's link in the chain: SHA-256 over the previous hash and the canonical JSON of the
 * record's content (everything but seq and the hashes). The one definition, for every reader.
 */
export const auditRecordHash = (prev: string, r: Omit<AuditRecord, "seq" | "hash">): string =>
  hashOf(prev, {
    at: r.at,
    actor: r.actor,
    on_behalf_of: r.on_behalf_of,
    action: r.action,
    object: r.object,
    outcome: r.outcome,
    details: r.details,
  });

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
    async head() {
      const row = (await knex("audit_log").orderBy("seq", "desc").first()) as
        Record<string, unknown> | undefined;
      return row ? toRecord(row) : undefined;
    },
    async verify(opts = {}) {
      const pageSize = opts.pageSize ?? DEFAULT_PAGE;
      const { anchor } = opts;
      // An anchor at seq 0 is the genesis: a log that was empty when it was signed.
      const fromAnchor = opts.fromAnchor === true && anchor !== undefined && anchor.seq > 0;
      const report: AuditReport = { ok: true, records: 0, first: null, last: null, pages: 0 };
      const fail = (b: AuditBreak): AuditReport => ({ ...report, ok: false, break: b });
      let prev: AuditRecord | undefined;
      if (anchor?.seq === 0 && anchor.hash !== GENESIS)
        return fail({ kind: "rewritten", seq: 0, message: "the anchor's genesis is not this chain's" });
      let anchorSeen = anchor === undefined || anchor.seq === 0;
      // Keyset paging by seq: each query reads at most pageSize rows, so a table of any size is
      // checked in constant memory, and records appended meanwhile are simply read as they come.
      let after = fromAnchor ? anchor.seq - 1 : 0;
      for (;;) {
        const rows = (await knex("audit_log")
          .where("seq", ">", after)
          .orderBy("seq")
          .limit(pageSize)) as Record<string, unknown>[];
        report.pages++;
        for (const row of rows) {
          const r = toRecord(row);
          const prevHash = row.prev_hash as string;
          if (hashOf(prevHash, content(r)) !== r.hash)
            return fail({
              kind: "edited",
              seq: r.seq,
              message: `record ${String(r.seq)} was edited: its content does not match its hash`,
            });
          const broken = linkBreak(prev, r.seq, prevHash, fromAnchor && prev === undefined);
          if (broken) return fail(broken);
          if (anchor && !anchorSeen && r.seq >= anchor.seq) {
            if (r.seq !== anchor.seq || r.hash !== anchor.hash)
              return fail({
                kind: "rewritten",
                seq: anchor.seq,
                message: `record ${String(anchor.seq)} is ${r.seq === anchor.seq ? "not the one" : "missing, but"} the anchor signed: records up to it were deleted or edited and the chain re-hashed`,
              });
            anchorSeen = true;
          }
          report.records++;
          report.first ??= { seq: r.seq, at: r.at };
          report.last = { seq: r.seq, at: r.at, hash: r.hash };
          prev = r;
        }
        const lastRow = rows.at(-1);
        if (!lastRow || rows.length < pageSize) break;
        after = Number(lastRow.seq);
      }
      if (anchor && !anchorSeen)
        return fail({
          kind: "truncated",
          seq: anchor.seq,
          message: `the newest records were deleted: the anchor signed seq ${String(anchor.seq)}, the log ends at ${report.last ? `seq ${String(report.last.seq)}` : "nothing"}`,
        });
      return report;
    },
  };
}

/**
 * Whether a self-consistent record still chains to the record before it. A gap in seq alone is
 * no break (a rolled-back insert skips a sequence value); a gap where the link also fails is.
 */
function linkBreak(
  prev: AuditRecord | undefined,
  seq: number,
  prevHash: string,
  startsAtAnchor: boolean,
): AuditBreak | undefined {
  if (startsAtAnchor) return undefined; // the anchor vouches for what came before
  if (!prev) {
    return prevHash === GENESIS
      ? undefined
      : {
          kind: "missing",
          seq,
          message: `records before seq ${String(seq)} are missing: the first record does not start the chain`,
        };
  }
  if (prevHash === prev.hash) return undefined;
  if (seq > prev.seq + 1)
    return {
      kind: "missing",
      seq: prev.seq + 1,
      message: `records between seq ${String(prev.seq)} and ${String(seq)} are missing: record ${String(seq)} chains to one that is not there`,
    };
  return {
    kind: "edited",
    seq: prev.seq,
    message: `record ${String(prev.seq)} was edited (and re-hashed): record ${String(seq)} chained to a different one`,
  };
}
