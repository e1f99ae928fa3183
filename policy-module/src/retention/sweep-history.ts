import type { Knex } from "knex";
import type { SweepResult } from "./sweeper.ts";

export interface SweepRecord {
  at: string;
  seconds: number;
  redacted: number;
  forgotten: number;
  failed: number;
  purged_rooms: number;
  media_deleted: number;
  remote_media_deleted: number;
}

const COLUMNS = [
  "redacted",
  "forgotten",
  "failed",
  "purged_rooms",
  "media_deleted",
  "remote_media_deleted",
] as const;

/** The sweeps that ran (migration 35), for the console's status page: counts and durations only. */
export function sweepHistory(knex: Knex) {
  return {
    record: async (startedAt: Date, r: SweepResult): Promise<void> => {
      await knex("retention_sweeps").insert({
        started_at: startedAt,
        seconds: r.seconds,
        ...Object.fromEntries(COLUMNS.map((c) => [c, r[c]])),
      });
    },
    /** The latest `limit` sweeps, oldest first (the order a chart reads). */
    recent: async (limit: number): Promise<SweepRecord[]> => {
      const rows = await knex("retention_sweeps")
        .orderBy("started_at", "desc")
        .limit(limit)
        .select<
          (Record<(typeof COLUMNS)[number], number | string> & {
            started_at: Date | string;
            seconds: number | string;
          })[]
        >("started_at", "seconds", ...COLUMNS);
      return rows.reverse().map((r) => ({
        at: new Date(r.started_at).toISOString(),
        seconds: Number(r.seconds),
        ...(Object.fromEntries(COLUMNS.map((c) => [c, Number(r[c])])) as Record<
          (typeof COLUMNS)[number],
          number
        >),
      }));
    },
    pruneBefore: async (before: Date): Promise<void> => {
      await knex("retention_sweeps").where("started_at", "<", before).delete();
    },
  };
}
export type SweepHistory = ReturnType<typeof sweepHistory>;
