import { randomBytes } from "node:crypto";
import type { LeaseStore } from "@medmesh/common";
import type { Logger } from "pino";
import { VENDOR_JOB_PREFIX } from "../core/leaders.ts";
import type { InteropConfig } from "../interop/config.ts";
import type { BridgeStore } from "../store/index.ts";
import type { Removed } from "./metrics.ts";

const DAY_MS = 86_400_000;
const LEASE = "bridge-prune";
const LEASE_MS = 10 * 60_000;
const BATCH = 1000;
/** Why a row of a vendor no replica carries was given up (the row's error, shown to the operator). */
export const UNCARRIED = "Not carried: no bridge replica has this messenger in its configuration";

export interface PruneResult {
  ran: boolean;
  /** Settled rows of each queue (carried, or given up and kept for a retry until now). */
  outbound_rows: number;
  inbound_rows: number;
  media_rows: number;
  /** Pending rows of vendors no replica carries any more, given up (and so pruned in their time). */
  uncarried_rows: number;
  requests: number;
  nonces: number;
  seconds: number;
}

/**
 * The periodic prune: what outlived its use goes, each question answered from an index
 * (migration 14). After the retention period: settled queue rows (given-up ones with their
 * content: an operator's retry is possible until then) and file rows; after the idempotency
 * window: the vendors' request records; expired signature nonces. One instance at a time (a lease).
 * First, the pending rows of a vendor taken out of every replica's configuration are given up: no
 * leader would ever carry them, and pending rows (with their content) are never pruned.
 */
export function createPruner(d: {
  store: BridgeStore;
  leases: LeaseStore;
  config: InteropConfig["lifecycle"];
  /** The vendors configured here. */
  vendors: readonly string[];
  log: Logger;
  removed: Removed;
}) {
  const holder = `bridge-prune-${String(process.pid)}-${randomBytes(4).toString("hex")}`;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;

  const run = async (now = new Date()): Promise<PruneResult> => {
    const started = process.hrtime.bigint();
    const result: PruneResult = {
      ran: false,
      outbound_rows: 0,
      inbound_rows: 0,
      media_rows: 0,
      uncarried_rows: 0,
      requests: 0,
      nonces: 0,
      seconds: 0,
    };
    // The lease runs on the real clock, whatever `now` the caller prunes at.
    if (!(await d.leases.tryAcquire(LEASE, holder, LEASE_MS))) return result;
    result.ran = true;
    try {
      for (const [queue, table] of [
        ["outbound", d.store.outbound],
        ["inbound", d.store.inbound],
      ] as const)
        for (const u of await table.giveUpUncarried(d.vendors, VENDOR_JOB_PREFIX, UNCARRIED)) {
          result.uncarried_rows += u.rows;
          d.log.warn({ queue, vendor: u.vendor, rows: u.rows }, "given up: no replica carries the vendor");
        }
      const retention = new Date(now.getTime() - d.config.retention_days * DAY_MS);
      const idempotency = new Date(now.getTime() - d.config.idempotency_days * DAY_MS);
      result.outbound_rows = await d.store.outbound.pruneSettled(retention, BATCH);
      result.inbound_rows = await d.store.inbound.pruneSettled(retention, BATCH);
      result.media_rows = await d.store.media.prune(retention, BATCH);
      result.requests = await d.store.requests.pruneRequests(idempotency, BATCH);
      result.nonces = await d.store.requests.pruneNonces(now);
    } finally {
      await d.leases.release(LEASE, holder);
    }
    d.removed.inc({ what: "outbound_rows", why: "retention_period" }, result.outbound_rows);
    d.removed.inc({ what: "inbound_rows", why: "retention_period" }, result.inbound_rows);
    d.removed.inc({ what: "media_rows", why: "retention_period" }, result.media_rows);
    d.removed.inc({ what: "requests", why: "idempotency_window" }, result.requests);
    d.removed.inc({ what: "nonces", why: "nonce_expired" }, result.nonces);
    result.seconds = Number(process.hrtime.bigint() - started) / 1e9;
    d.log.info(result, "bridge store pruned");
    return result;
  };

  const tick = (): void => {
    if (running) return;
    running = run()
      .catch((err: unknown) => {
        d.log.warn({ err }, "could not prune the bridge's store; trying again at the next interval");
      })
      .finally(() => {
        running = undefined;
      });
  };

  return {
    run,
    /** Prunes now (what piled up while the bridge was down) and then every interval. */
    start(): void {
      tick();
      timer = setInterval(tick, d.config.prune_interval_seconds * 1000);
      timer.unref();
    },
    async stop(): Promise<void> {
      clearInterval(timer);
      await running;
    },
  };
}
export type Pruner = ReturnType<typeof createPruner>;
