import { randomBytes } from "node:crypto";
import { createAuditLog, LeadershipLost, type DocumentStore, type Leader } from "@medmesh/common";
import type { Knex } from "knex";
import cron, { type ScheduledTask } from "node-cron";
import type { Logger } from "pino";
import { Counter, Gauge, type Registry } from "prom-client";
import { createRateLimiter } from "../proxy/rate-limit.ts";
import { verificationRecords, type VerificationRecord, type VerificationRecords } from "./records.ts";
import type { CheckCommit, Verifier } from "./verifier.ts";

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

/** The singleton job's name: its leader lease, and the document recording the run in progress. */
export const REVERIFY_JOB = "identity-reverify";
const PAGE = 500;

/** The run in progress, in the store: a standby that takes over continues it. */
interface ReverifyRun {
  id: string;
  started_at: string;
  finished: boolean;
}

/**
 * Continuous re-verification: on a schedule, every verified (or pending) clinician is checked
 * against their registry again, with bounded concurrency and a rate limit towards the registry.
 * It runs on the elected leader of REVERIFY_JOB only. Struck off or suspended → revoked in this
 * run; unreachable → status runs out at its expiry, never extended. Each record's check is stored
 * and audited (`identity.reverify`, with the run's ID) in one transaction under the lease, and its
 * `last_checked_at` is the checkpoint: a standby that takes over continues the run with the
 * records not yet checked since it started — each checked and audited once.
 */
export function createReverifier(deps: {
  verifier: Verifier;
  records: VerificationRecords;
  leader: Leader;
  /** For each check's transaction (record and audit together) and the record of the run. */
  knex: Knex;
  documents: DocumentStore;
  config: ReverifyConfig;
  /** This server's deactivated accounts: their records are released, not looked up (docs/identity.md). */
  deactivatedAccounts?: () => Promise<ReadonlySet<string>>;
  log: Logger;
  metrics: Registry;
}) {
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

  const runOnce = async (now: Date, resumed?: ReverifyRun): Promise<ReverifyResult> => {
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
    if (!deps.leader.isLeader()) {
      deps.log.info("re-verification runs on another instance (the leader)");
      return result;
    }
    result.ran = true;
    const run: ReverifyRun = resumed ?? {
      id: randomBytes(8).toString("hex"),
      started_at: now.toISOString(),
      finished: false,
    };
    await deps.documents.put(REVERIFY_JOB, JSON.stringify(run));
    if (resumed) deps.log.info({ run: run.id }, "continuing the re-verification a previous leader began");
    const since = new Date(run.started_at);
    const actor = deps.verifier.actor;
    const audit = (trx: Knex) => createAuditLog(trx);
    const limiter = createRateLimiter({
      perSecond: deps.config.rate_per_second,
      burst: deps.config.concurrency,
    });
    // A deactivation Synapse reported while this service was down never arrived: found here.
    const gone = await (deps.deactivatedAccounts?.() ?? Promise.resolve(new Set<string>())).catch(
      (err: unknown) => {
        deps.log.warn({ err }, "could not list deactivated accounts; every clinician is checked");
        return new Set<string>();
      },
    );
    const commit =
      (record: VerificationRecord): CheckCommit =>
      (next, write) =>
        deps.knex.transaction(async (trx) => {
          await deps.leader.fence(trx);
          await write({ records: verificationRecords(trx), audit: audit(trx) });
          await audit(trx).record({
            actor,
            on_behalf_of: record.user_id,
            action: "identity.reverify",
            object: record.user_id,
            outcome: next.status,
            details: { registry: next.registry, run: run.id },
          });
        });
    let cursor = "";
    for (;;) {
      // Records not yet checked in this run (last checked before it started), in user order.
      const page = await deps.records.due(since, PAGE, cursor);
      if (page.length === 0) break;
      cursor = page[page.length - 1]?.user_id ?? cursor;
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(deps.config.concurrency, page.length) }, async () => {
          for (let record = page[next++]; record; record = page[next++]) {
            for (let v = limiter.take("registry"); !v.allowed; v = limiter.take("registry")) {
              await new Promise((r) => setTimeout(r, v.retryAfterMs));
            }
            // Lost the lease: stop before the next record (the new leader continues the run).
            if (!deps.leader.isLeader()) throw new LeadershipLost(REVERIFY_JOB);
            let after;
            try {
              after = gone.has(record.user_id)
                ? ((await deps.verifier.releaseDeactivated(record, commit(record))) ?? record)
                : await deps.verifier.check(record, actor, new Date(), commit(record));
            } catch (err) {
              if (err instanceof LeadershipLost) throw err;
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
    }
    await deps.documents.put(REVERIFY_JOB, JSON.stringify({ ...run, finished: true }));
    result.seconds = Number(process.hrtime.bigint() - started) / 1e9;
    lastRun.set(result.seconds);
    deps.log.info(result, "re-verification run finished");
    return result;
  };

  let task: ScheduledTask | undefined;
  const begin = (now: Date, resumed?: ReverifyRun): Promise<ReverifyResult> => {
    running ??= runOnce(now, resumed).finally(() => {
      running = undefined;
    });
    return running;
  };
  /** On election: the run a previous leader left unfinished, continued (undefined: none). */
  const resume = async (): Promise<ReverifyResult | undefined> => {
    const stored = await deps.documents.get(REVERIFY_JOB);
    const run = stored ? (JSON.parse(stored) as ReverifyRun) : undefined;
    if (!run || run.finished) return undefined;
    return begin(new Date(run.started_at), run);
  };
  deps.leader.onElected(() => {
    resume().catch((err: unknown) => {
      deps.log.error({ err }, "continuing the interrupted re-verification failed");
    });
  });
  return {
    /** One run now (also what the schedule does); concurrent calls share the run in progress. */
    run: (now = new Date()): Promise<ReverifyResult> => begin(now),
    resume,
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
