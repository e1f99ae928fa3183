import { randomBytes } from "node:crypto";
import type { LeaseStore } from "@medmesh/common";
import type { Logger } from "pino";
import type { RemoteAnswer } from "./remote.ts";
import type { RevocationTables } from "./revocation-store.ts";

const LEASE = "identity-remote-badges";
const BATCH = 200;

/**
 * Other organisations' users this organisation's bot shows a badge for are kept in the store
 * (`remote_badges`) with the time their attestation must be asked for again: half-way to its
 * expiry (so a fresh one is there before it runs out), at most one refresh interval away. One
 * instance (a lease) asks in the background; a changed answer — revoked, run out, renewed —
 * rewrites the badge in every room this organisation hosts. An organisation that cannot be
 * reached keeps a still valid badge until its expiry, then the badge says unverified.
 */
export function createRemoteBadgeRefresher(deps: {
  tables: RevocationTables;
  leases: LeaseStore;
  refresh(userId: string): Promise<RemoteAnswer>;
  /** Rewrites the user's badge in this organisation's rooms (and records what it showed). */
  rebadge(userId: string): Promise<unknown>;
  refreshMs: number;
  tickMs: number;
  log: Logger;
}) {
  const holder = `remote-badges-${String(process.pid)}-${randomBytes(4).toString("hex")}`;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  /** When to ask again about a badge showing `exp` (unix seconds) or unverified. */
  const nextCheck = (verified: boolean, expiresAt: Date | null, now = Date.now()): Date => {
    const interval = now + deps.refreshMs;
    if (!verified || !expiresAt) return new Date(interval);
    const halfway = now + Math.max((expiresAt.getTime() - now) / 2, 1000);
    return new Date(Math.min(interval, halfway));
  };

  const check = async (userId: string, now: Date): Promise<void> => {
    const shown = await deps.tables.badge(userId);
    const answer = await deps.refresh(userId);
    const a = answer.attestation;
    if (!answer.definitive && shown?.verified && shown.expires_at && shown.expires_at > now) {
      // Not reachable now: the badge shown stays valid until its attestation runs out.
      await deps.tables.showBadge(userId, true, shown.expires_at, nextCheck(true, shown.expires_at));
      return;
    }
    const verified = a !== undefined;
    const expiresAt = a ? new Date(a.exp * 1000) : null;
    if (shown?.verified !== verified || shown.expires_at?.getTime() !== expiresAt?.getTime()) {
      await deps.rebadge(userId); // records the new state through the badge it writes
    } else {
      await deps.tables.showBadge(userId, verified, expiresAt, nextCheck(verified, expiresAt));
    }
  };

  const tick = async (): Promise<void> => {
    if (!(await deps.leases.tryAcquire(LEASE, holder, Math.max(deps.tickMs * 5, 30_000)))) return;
    const now = new Date();
    const due = await deps.tables.badgesDue(now, BATCH);
    for (const userId of due) {
      await check(userId, now).catch((err: unknown) => {
        deps.log.warn({ err, user_id: userId }, "could not refresh a remote badge");
      });
    }
  };

  return {
    nextCheck,
    /** One pass now (also what the timer does). */
    run(): Promise<void> {
      running ??= tick().finally(() => {
        running = undefined;
      });
      return running;
    },
    start() {
      timer = setInterval(() => {
        this.run().catch((err: unknown) => {
          deps.log.warn({ err }, "remote badge refresh failed");
        });
      }, deps.tickMs);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      await running?.catch(() => undefined);
      await deps.leases.release(LEASE, holder).catch(() => undefined);
    },
  };
}
