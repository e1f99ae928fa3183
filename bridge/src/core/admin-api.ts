import { ApiError, asyncHandler } from "@medmesh/common";
import type { Express } from "express";
import type { InteropConfig } from "../interop/config.ts";
import type { Pruner } from "../lifecycle/index.ts";
import type { BridgeStore, QueueRow, QueueTable } from "../store/index.ts";
import type { BridgeStatus } from "./status.ts";

/**
 * The bridge's admin API, on the service's internal port (not the public interop URL): dead
 * letters (what could not be carried either way, without content) and a retry, the prune, and the
 * vendors' queues for the console's status page. It only reads and writes rows: any replica serves it.
 */
export function mountAdminApi(
  app: Express,
  d: {
    store: BridgeStore;
    /** Told of a row queued again (on a standby: the vendor's leader is told through the store). */
    queues: { inbound: { wake(): void }; delivery: { wake(): void } };
    pruner: Pruner;
    status: BridgeStatus;
    lifecycle: InteropConfig["lifecycle"];
  },
): void {
  const directions: Record<string, { table: QueueTable<QueueRow>; queue: { wake(): void } }> = {
    outbound: { table: d.store.outbound, queue: d.queues.delivery },
    inbound: { table: d.store.inbound, queue: d.queues.inbound },
  };
  const pick = (direction: string) => {
    const t = directions[direction];
    if (!t)
      throw new ApiError(
        "M_NOT_FOUND",
        "direction is inbound (vendor → Matrix) or outbound (Matrix → vendor)",
      );
    return t;
  };
  app.get(
    "/_medmesh/admin/v1/bridge/status",
    asyncHandler(async (_req, res) => {
      res.json(await d.status.read());
    }),
  );
  app.get(
    "/_medmesh/admin/v1/bridge/:direction/failed",
    asyncHandler(async (req, res) => {
      res.json({ failed: await pick(String(req.params.direction)).table.failed(500) });
    }),
  );
  app.post(
    "/_medmesh/admin/v1/bridge/:direction/failed/:seq/retry",
    asyncHandler(async (req, res) => {
      const t = pick(String(req.params.direction));
      if (!(await t.table.retry(Number(req.params.seq))))
        throw new ApiError("M_NOT_FOUND", "No failed event with this seq");
      t.queue.wake();
      res.json({ retried: true });
    }),
  );
  app.post(
    "/_medmesh/admin/v1/bridge/prune",
    asyncHandler(async (req, res) => {
      const body = (req.body ?? {}) as { now?: unknown };
      if (body.now !== undefined && !d.lifecycle.allow_clock_override)
        throw new ApiError(
          "M_FORBIDDEN",
          "interop.lifecycle.allow_clock_override is off: the prune uses the real clock",
        );
      const now = typeof body.now === "string" ? new Date(body.now) : new Date();
      if (Number.isNaN(now.getTime())) throw new ApiError("M_INVALID_PARAM", "now must be an ISO date-time");
      res.json(await d.pruner.run(now));
    }),
  );
}
