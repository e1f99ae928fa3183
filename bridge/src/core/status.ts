import type { Logger } from "pino";
import type { BridgeStore, VendorCounts } from "../store/index.ts";

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

const none = { pending: 0, failed: 0, oldest_pending_at: null };
const strip = ({ pending, failed, oldest_pending_at }: VendorCounts) => ({
  pending,
  failed,
  oldest_pending_at,
});

/**
 * What the console's status page shows of the bridge: each configured vendor with its queues in
 * both directions, and the last day's queue depths (sampled once a minute by every replica; the
 * table keeps one row per minute).
 */
export function bridgeStatus(d: { store: BridgeStore; vendors: readonly string[]; log: Logger }) {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  const sample = async (now = new Date()): Promise<void> => {
    const [outbound, inbound] = await Promise.all([d.store.outbound.counts(), d.store.inbound.counts()]);
    await d.store.queueSamples.record(now, [
      { direction: "outbound", ...outbound },
      { direction: "inbound", ...inbound },
    ]);
    await d.store.queueSamples.pruneBefore(new Date(now.getTime() - DAY_MS));
  };
  const tick = (): void => {
    running ??= sample()
      .catch((err: unknown) => {
        d.log.warn({ err }, "could not record the bridge's queue depths");
      })
      .finally(() => {
        running = undefined;
      });
  };

  return {
    async read(now = new Date()) {
      const [outbound, inbound, samples] = await Promise.all([
        d.store.outbound.countsByVendor(),
        d.store.inbound.countsByVendor(),
        d.store.queueSamples.since(new Date(now.getTime() - DAY_MS)),
      ]);
      // Configured vendors first, then any a row still names (a vendor removed from the config).
      const ids = [
        ...new Set([...d.vendors, ...outbound.map((r) => r.vendor), ...inbound.map((r) => r.vendor)]),
      ];
      const of = (rows: VendorCounts[], id: string) => {
        const row = rows.find((r) => r.vendor === id);
        return row ? strip(row) : none;
      };
      return {
        vendors: ids.map((id) => ({
          id,
          configured: d.vendors.includes(id),
          outbound: of(outbound, id),
          inbound: of(inbound, id),
        })),
        samples,
      };
    },
    start(): void {
      tick();
      timer = setInterval(tick, MINUTE_MS);
      timer.unref();
    },
    async stop(): Promise<void> {
      clearInterval(timer);
      await running;
    },
  };
}
export type BridgeStatus = ReturnType<typeof bridgeStatus>;
