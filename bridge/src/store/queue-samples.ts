import type { Knex } from "knex";

export interface QueueSample {
  at: string;
  direction: "inbound" | "outbound";
  pending: number;
  failed: number;
}

const MINUTE_MS = 60_000;

/** Queue depths over time (migration 34), one row per minute and direction, kept for a day. */
export function queueSamples(knex: Knex) {
  return {
    /** Records the minute's depths; a second writer in the same minute (another replica) changes nothing. */
    record: async (now: Date, rows: Omit<QueueSample, "at">[]): Promise<void> => {
      const at = new Date(Math.floor(now.getTime() / MINUTE_MS) * MINUTE_MS);
      await knex("bridge_queue_samples")
        .insert(rows.map((r) => ({ at, ...r })))
        .onConflict(["at", "direction"])
        .ignore();
    },
    since: async (from: Date): Promise<QueueSample[]> => {
      const rows = await knex("bridge_queue_samples")
        .where("at", ">=", from)
        .orderBy(["at", "direction"])
        .select<
          { at: Date | string; direction: QueueSample["direction"]; pending: number; failed: number }[]
        >("at", "direction", "pending", "failed");
      return rows.map((r) => ({ ...r, at: new Date(r.at).toISOString() }));
    },
    pruneBefore: async (before: Date): Promise<void> => {
      await knex("bridge_queue_samples").where("at", "<", before).delete();
    },
  };
}
export type QueueSamples = ReturnType<typeof queueSamples>;
