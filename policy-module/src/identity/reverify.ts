import { randomBytes } from "node:crypto";
import type { LeaseStore } from "@medmesh/common";
import cron, { type ScheduledTask } from "node-cron";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { createRateLimiter } from "../proxy/rate-limit.ts";
import type { VerificationRecords } from "./records.ts";
import type { Verifier } from "./verifier.ts";

export interface ReverifyConfig {
  schedule: string;
  concurrency: number;
  rate_per_second: number;
}

export interface ReverifyResult {
  ran: boolean;
  checked: number;
  verified: number;
  revoked: number;
  unavailable: number;
  /** Records that could not be checked at all (an error, logged by user ID); the run went on. */
  failed: number;
  seconds: number;
}

const LEASE = "identity-reverify";
const LEASE_MS = 10 * 60_000;
const PAGE = 500;

/**
 * Continuous re-verification: on a schedule, every verified (or pending) clinician is checked
 * against their registry again, with bounded concurrency and a rate limit towards the registry.
 * A leader lease in the store makes sure only one instance runs it; the lease is renewed as the
 * run goes on. Struck off or suspended → revoked in this run; unreachable → status runs out at
 * its expiry, never extended.
 */
export function createReverifier(deps: {
  verifier: Verifier;
  records: VerificationRecords;
  leases: LeaseStore;
  config: ReverifyConfig;
  log: Logger;
  metrics: Registry;
}) {
  const holder = `reverify-${String(process.pid)}-${randomBytes(4).toString("hex")}`;
  const checks = new Counter({
    name: "medmesh_identity_reverify_checks_total",
    help: "Registry re-checks by outcome (verified, revoked, rejected, pending)",
    labelNames: ["outcome"] as const,
    registers: [deps.metrics],
  });
  const lastRun = new Gauge({
    name: "medmesh_identity_reverify_last_run_seconds",
    help: "Duration of the last completed re-verification run",
    registers: [deps.metrics],
  });
  let running: Promise<ReverifyResult> | undefined;

  const runOnce = async (now: Date): Promise<ReverifyResult> => {
    const started = process.hrtime.bigint();
    const result: ReverifyResult = {
      ran: false,
      checked: 0,
      verified: 0,
      revoked: 0,
      unavailable: 0,
      failed: 0,
      seconds: 0,
    };
    if (!(await deps.leases.tryAcquire(LEASE, holder, LEASE_MS))) {
      deps.log.info("re-verification runs on another instance");
      return result;
    }
    result.ran = true;
    const limiter = createRateLimiter({
      perSecond: deps.config.rate_per_second,
      burst: deps.config.concurrency,
    });
    try {
      let cursor = "";
      for (;;) {
        // Records not yet checked in this run (last checked before it started), in user order.
        const page = await deps.records.due(now, PAGE, cursor);
        if (page.length === 0) break;
        cursor = page[page.length - 1]?.user_id ?? cursor;
        let next = 0;
        await Promise.all(
          Array.from({ length: Math.min(deps.config.concurrency, page.length) }, async () => {
            for (let record = page[next++]; record; record = page[next++]) {
              for (let v = limiter.take("registry"); !v.allowed; v = limiter.take("registry")) {
                await new Promise((r) => setTimeout(r, v.retryAfterMs));
              }
              let after;
              try {
                after = await deps.verifier.check(record, deps.verifier.actor);
              } catch (err) {
                // One record that cannot be checked never stops the run: it is reported, the rest go on.
                result.failed++;
                checks.inc({ outcome: "failed" });
                deps.log.error({ err, user_id: record.user_id }, "could not re-check a clinician");
                continue;
              }
              result.checked++;
              if (after.status === "verified") result.verified++;
              else if (after.status === "revoked") result.revoked++;
              if (after.attempts > record.attempts) result.unavailable++;
              checks.inc({ outcome: after.status });
            }
          }),
        );
        await deps.leases.tryAcquire(LEASE, holder, LEASE_MS); // still ours: renew
      }
    } finally {
      await deps.leases.release(LEASE, holder);
    }
    result.seconds = Number(process.hrtime.bigint() - started) / 1e9;
    lastRun.set(result.seconds);
    deps.log.info(result, "re-verification run finished");
    return result;
  };

  let task: ScheduledTask | undefined;
  return {
    /** One run now (also what the schedule does); concurrent calls share the run in progress. */
    run(now = new Date()): Promise<ReverifyResult> {
      running ??= runOnce(now).finally(() => {
        running = undefined;
      });
      return running;
    },
    start() {
      task = cron.schedule(deps.config.schedule, () => {
        this.run().catch((err: unknown) => {
          deps.log.error({ err }, "re-verification run failed");
        });
      });
    },
    async stop() {
      await task?.stop();
      await running?.catch(() => undefined);
    },
  };
}
export type Reverifier = ReturnType<typeof createReverifier>;
