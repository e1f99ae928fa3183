import { LeadershipLost, Permanent } from "@medmesh/common";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import type { Completion, QueueRow, QueueTable } from "../store/index.ts";
import type { VendorLeaders } from "./leaders.ts";

export type { QueueRow } from "../store/index.ts";

// One type for "retrying will not mend it", so the appservice frame dead-letters what the bridge refuses.
export { Permanent };

export interface QueueOptions<Row extends QueueRow> {
  name: "inbound" | "outbound";
  table: QueueTable<Row>;
  /** Only the rows of the vendors this replica leads are carried, each outcome under their lease. */
  leaders: VendorLeaders;
  /** The state a given-up row ends in (for the metric). */
  failedState: string;
  log: Logger;
  metrics: Registry;
  concurrency: number;
  maxAttempts: number;
  initialBackoffMs: number;
  maxBackoffMs: number;
  /** Carries one row; returns what to record with its completion, in the same transaction. */
  handle(row: Row): Promise<Completion | undefined>;
  /** Told once a row is given up (permanent failure or out of attempts). */
  onFailed?(row: Row, reason: string): Promise<void>;
}

/**
 * A persistent queue carried in order per conversation: only the oldest pending row of each
 * conversation is taken, so a row waiting for a retry holds back the ones behind it and
 * nothing else. Conversations proceed in parallel. A row is marked done in the same database
 * transaction that records its effects, after the effect: a crash in between repeats the effect
 * with the same deterministic IDs (Matrix transaction IDs, Idempotency-Keys), which the other side
 * recognises. Only the rows of the vendors whose lease this replica holds are taken; each
 * outcome (done, retry, given up) commits in a transaction that fences the row's vendor lease, so
 * a deposed leader records nothing and its successor repeats the row with the same IDs.
 */
export class OrderedQueue<Row extends QueueRow> {
  private readonly o: QueueOptions<Row>;
  private running = false;
  private loop: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private readonly processed: Counter<"outcome">;

  constructor(o: QueueOptions<Row>) {
    this.o = o;
    this.processed = new Counter({
      name: `medmesh_bridge_${o.name}_total`,
      help: `Bridge ${o.name} events by outcome (done, retried, failed)`,
      labelNames: ["outcome"] as const,
      registers: [o.metrics],
    });
    const table = o.table;
    new Gauge({
      name: `medmesh_bridge_${o.name}_queue`,
      help: `Bridge ${o.name} events by state (pending, ${o.failedState})`,
      labelNames: ["state"] as const,
      registers: [o.metrics],
      async collect() {
        const counts = await table.counts();
        this.reset();
        this.set({ state: "pending" }, counts.pending);
        this.set({ state: o.failedState }, counts.failed);
      },
    });
  }

  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  wake(): void {
    this.wakeUp?.();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake();
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.running) {
      let rows: Row[] = [];
      const vendors = this.o.leaders.led();
      try {
        if (vendors.length > 0) rows = await this.o.table.heads(this.o.concurrency * 4, vendors);
      } catch (err) {
        this.o.log.error({ err, queue: this.o.name }, "could not read the queue");
      }
      if (rows.length > 0) {
        let next = 0;
        const worker = async () => {
          while (next < rows.length && this.running) {
            const row = rows[next++];
            // Stops before doing more once the vendor's lease is lost.
            if (row && this.o.leaders.leads(row.vendor)) await this.carry(row);
          }
        };
        const outcomes = await Promise.allSettled(
          Array.from({ length: Math.min(this.o.concurrency, rows.length) }, worker),
        );
        const failed = outcomes.find((o) => o.status === "rejected");
        // The store went away while an outcome was being recorded: the row is still pending and is
        // carried again (with the same IDs, which the other side recognises) once the store is back.
        if (!failed) continue;
        this.o.log.error(
          { err: failed.reason as unknown, queue: this.o.name },
          "could not record an outcome",
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 500);
        this.wakeUp = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wakeUp = undefined;
    }
  }

  private async carry(row: Row): Promise<void> {
    const { table, log, leaders } = this.o;
    const fence: Completion = (trx) => leaders.fence(row.vendor, trx);
    try {
      const record = await this.o.handle(row);
      await table.complete(row, async (trx) => {
        await fence(trx);
        await record?.(trx);
      });
      this.processed.inc({ outcome: "done" });
    } catch (err) {
      // Deposed meanwhile: nothing is recorded; the vendor's new leader carries the row again.
      if (err instanceof LeadershipLost || !leaders.leads(row.vendor)) {
        log.info({ queue: this.o.name, seq: row.seq, vendor: row.vendor }, "left to the vendor's new leader");
        return;
      }
      const reason = err instanceof Error ? err.message : String(err);
      const attempts = row.attempts + 1;
      const permanent = err instanceof Permanent || attempts >= this.o.maxAttempts;
      if (permanent) {
        await table.giveUp(row, attempts, reason, fence);
        this.processed.inc({ outcome: "failed" });
        log.warn({ queue: this.o.name, seq: row.seq, conversation: row.conversation_id, reason }, "given up");
        await this.o.onFailed?.(row, reason).catch((e: unknown) => {
          log.error({ err: e }, "could not report a failed event");
        });
        return;
      }
      const delay = Math.min(this.o.maxBackoffMs, this.o.initialBackoffMs * 2 ** (attempts - 1));
      await table.retryLater(row, attempts, reason, new Date(Date.now() + delay), fence);
      this.processed.inc({ outcome: "retried" });
      log.info({ queue: this.o.name, seq: row.seq, attempts, delay_ms: delay, reason }, "will retry");
    }
  }
}
