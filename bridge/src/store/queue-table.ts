import type { Knex } from "knex";
import { affected, deleteInBatches } from "./db.ts";

export interface QueueRow {
  seq: string | number;
  vendor: string;
  conversation_id: string;
  attempts: number;
}

export interface VendorCounts {
  vendor: string;
  pending: number;
  failed: number;
  oldest_pending_at: string | null;
}

/** What a carried row records with its completion, in the same transaction. */
export type Completion = (trx: Knex.Transaction) => Promise<void>;

/** The table behind an ordered queue (core/queue.ts): its rows' life from pending to settled. */
export interface QueueTable<Row extends QueueRow> {
  /**
   * The oldest pending row of each conversation that is due, oldest first; only the `vendors`'
   * rows when given (the vendors whose lease this replica holds).
   */
  heads(limit: number, vendors?: readonly string[], now?: Date): Promise<Row[]>;
  /** Marks the row carried together with its effects, and drops the content only delivery needed. */
  complete(row: Row, record?: Completion): Promise<void>;
  /**
   * Given up: kept (with its content) for an operator's retry until the retention period ends.
   * `fence` runs first in the same transaction (the vendor's lease: a deposed leader records nothing).
   */
  giveUp(row: Row, attempts: number, reason: string, fence?: Completion): Promise<void>;
  retryLater(row: Row, attempts: number, reason: string, at: Date, fence?: Completion): Promise<void>;
  counts(): Promise<{ pending: number; failed: number }>;
  /** Pending and given-up rows per vendor, and how long the oldest pending one has waited. */
  countsByVendor(): Promise<VendorCounts[]>;
  /** Given-up rows, oldest first, without their content. */
  failed(
    limit: number,
  ): Promise<
    { seq: number; vendor: string; conversation_id: string; attempts: number; error: string | null }[]
  >;
  /** Queues a given-up row again; false when there is no such row. */
  retry(seq: number): Promise<boolean>;
  /** Deletes settled rows (carried or given up) created before `before`; the count. */
  pruneSettled(before: Date, batch: number): Promise<number>;
  /**
   * Gives up the pending rows of the vendors no replica carries: not in `configured` (this
   * replica's vendors) and no unexpired lease `<leasePrefix><vendor>` (a replica still running an
   * older configuration leads it). The given-up rows per vendor.
   */
  giveUpUncarried(
    configured: readonly string[],
    leasePrefix: string,
    reason: string,
  ): Promise<{ vendor: string; rows: number }[]>;
}

/**
 * A queue table: `seq`, `vendor`, `conversation_id`, `state` (pending → done | failed),
 * `attempts`, `next_attempt_at`, an error column, a creation time and content columns.
 */
export function queueTable<Row extends QueueRow>(
  knex: Knex,
  t: {
    table: string;
    states: { done: string; failed: string };
    errorColumn: string;
    createdColumn: string;
    /** Cleared when the row is carried: nothing needs them any more. */
    contentColumns: readonly string[];
  },
): QueueTable<Row> {
  const cleared = Object.fromEntries([...t.contentColumns, t.errorColumn].map((c) => [c, null]));
  return {
    heads: (limit, vendors, now = new Date()) =>
      knex(`${t.table} as r`)
        .where("r.state", "pending")
        .modify((q) => {
          if (vendors) void q.whereIn("r.vendor", vendors);
        })
        .where((q) => {
          void q.whereNull("r.next_attempt_at").orWhere("r.next_attempt_at", "<=", now);
        })
        .whereNotExists(
          knex(`${t.table} as p`)
            .whereRaw("p.vendor = r.vendor AND p.conversation_id = r.conversation_id AND p.seq < r.seq")
            .where("p.state", "pending")
            .select(knex.raw("1")),
        )
        .orderBy("r.seq")
        .limit(limit)
        .select("r.*") as Promise<Row[]>,
    complete: (row, record) =>
      knex.transaction(async (trx) => {
        await record?.(trx);
        await trx(t.table)
          .where({ seq: row.seq })
          .update({ state: t.states.done, delivered_at: new Date(), ...cleared });
      }),
    giveUp: (row, attempts, reason, fence) =>
      knex.transaction(async (trx) => {
        await fence?.(trx);
        await trx(t.table)
          .where({ seq: row.seq })
          .update({ state: t.states.failed, attempts, [t.errorColumn]: reason });
      }),
    retryLater: (row, attempts, reason, at, fence) =>
      knex.transaction(async (trx) => {
        await fence?.(trx);
        await trx(t.table)
          .where({ seq: row.seq })
          .update({ attempts, [t.errorColumn]: reason, next_attempt_at: at });
      }),
    counts: async () => {
      const rows = await knex(t.table)
        .whereIn("state", ["pending", t.states.failed])
        .groupBy("state")
        .select<{ state: string; n: string }[]>("state", knex.raw("count(*) as n"));
      const n = (state: string) => Number(rows.find((r) => r.state === state)?.n ?? 0);
      return { pending: n("pending"), failed: n(t.states.failed) };
    },
    countsByVendor: async () => {
      const rows = await knex(t.table)
        .whereIn("state", ["pending", t.states.failed])
        .groupBy("vendor")
        .orderBy("vendor")
        .select<{ vendor: string; pending: string; failed: string; oldest: Date | string | null }[]>(
          "vendor",
          knex.raw("count(*) FILTER (WHERE state = 'pending') AS pending"),
          knex.raw("count(*) FILTER (WHERE state <> 'pending') AS failed"),
          knex.raw(`min(${t.createdColumn}) FILTER (WHERE state = 'pending') AS oldest`),
        );
      return rows.map((r) => ({
        vendor: r.vendor,
        pending: Number(r.pending),
        failed: Number(r.failed),
        oldest_pending_at: r.oldest === null ? null : new Date(r.oldest).toISOString(),
      }));
    },
    failed: async (limit) => {
      const rows = await knex(t.table)
        .where({ state: t.states.failed })
        .orderBy("seq")
        .limit(limit)
        .select<
          { seq: string; vendor: string; conversation_id: string; attempts: number; error: string | null }[]
        >("seq", "vendor", "conversation_id", "attempts", `${t.errorColumn} as error`);
      return rows.map((r) => ({ ...r, seq: Number(r.seq) }));
    },
    retry: async (seq) =>
      affected(
        await knex(t.table)
          .where({ seq, state: t.states.failed })
          .update({ state: "pending", attempts: 0, next_attempt_at: new Date() }),
      ) > 0,
    // Answered from the partial index on settled rows' creation time (migration 14).
    pruneSettled: (before, batch) =>
      deleteInBatches(
        knex,
        t.table,
        (q) => q.whereNot("state", "pending").where(t.createdColumn, "<", before),
        batch,
      ),
    giveUpUncarried: async (configured, leasePrefix, reason) => {
      const given = await knex(t.table)
        .where("state", "pending")
        .whereNotIn("vendor", configured)
        .whereNotExists(
          knex("leases")
            .whereRaw("leases.name = ? || ??", [leasePrefix, `${t.table}.vendor`])
            .where("leases.expires_at", ">", new Date()),
        )
        .update({ state: t.states.failed, [t.errorColumn]: reason })
        .returning<{ vendor: string }[]>("vendor");
      const rows = new Map<string, number>();
      for (const g of given) rows.set(g.vendor, (rows.get(g.vendor) ?? 0) + 1);
      return [...rows].map(([vendor, n]) => ({ vendor, rows: n }));
    },
  };
}
