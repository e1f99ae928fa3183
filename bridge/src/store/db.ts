import type { Knex } from "knex";

/** Where a repository method runs: the pool, or a transaction it is part of. */
export type Db = Knex | Knex.Transaction;

/**
 * The rows an update or delete touched. knex's pg client answers a number; knex-pglite (the
 * embedded store) the driver's result, with `rowCount`.
 */
export function affected(result: unknown): number {
  if (typeof result === "number") return result;
  return (result as { rowCount?: number } | undefined)?.rowCount ?? 0;
}

/**
 * Deletes the rows of `table` that `where` selects, `batch` at a time (short transactions, no
 * long lock on a busy table); the count. Rows are addressed by `ctid`, whatever the table's key.
 */
export async function deleteInBatches(
  knex: Knex,
  table: string,
  where: (q: Knex.QueryBuilder) => Knex.QueryBuilder,
  batch: number,
): Promise<number> {
  let total = 0;
  for (;;) {
    const n = affected(
      await knex(table)
        .whereIn("ctid", where(knex(table).select("ctid")).limit(batch))
        .delete(),
    );
    total += n;
    if (n < batch) return total;
  }
}
