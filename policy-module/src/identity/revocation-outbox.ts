import { randomBytes } from "node:crypto";
import type { AuditLog, NotificationStore } from "@medmesh/common";
import type { Logger } from "pino";
import { Gauge, type Registry } from "prom-client";
import { PeerError } from "../directory/index.ts";
import type { OrgKey } from "../trust/request-signing.ts";
import { REVOCATIONS_PATH, signRevocation } from "./revocation-notice.ts";
import type { NoticeCounter } from "./revocation-receiver.ts";
import type { OutboxRow, RevocationTables } from "./revocation-store.ts";

export interface RevocationConfig {
  /** First retry after this long; doubled per attempt up to `max_backoff_seconds`. */
  initial_backoff_seconds: number;
  max_backoff_seconds: number;
  /** A notice a peer has not taken by then is given up (its attestations have long run out). */
  give_up_hours: number;
  timeout_ms: number;
}

/** Wakes the outbox on every instance when a notice is queued (any of them may deliver it). */
export const OUTBOX_CHANNEL = "medmesh_revocation_outbox";
const BATCH = 100;
/** A claimed row is due again after this long if its instance died while sending. */
const CLAIM_MS = 60_000;

/**
 * The sending side of revocation notices: a signed notice per revoked clinician, one outbox row
 * per trusted peer in the store (written before anything is sent, so a restart loses nothing),
 * delivered by POST over the peer API with retries and exponential backoff until the peer takes
 * it. Any instance may deliver; rows are claimed in the store so two do not send the same one
 * at once (and the receiver applies each notice once anyway, by its jti).
 */
export function createRevocationOutbox(deps: {
  serverName: string;
  orgKey: OrgKey | undefined;
  tables: RevocationTables;
  peers: { postJson(server: string, uri: string, content: unknown, timeoutMs: number): Promise<unknown> };
  /** The trusted peer organisations now (the trust list's servers, without this one). */
  peerServers(): string[];
  notifications: NotificationStore;
  audit: AuditLog;
  config: RevocationConfig;
  notices: NoticeCounter;
  log: Logger;
  metrics: Registry;
}) {
  const sent = deps.notices;
  new Gauge({
    name: "medmesh_identity_revocation_outbox_pending",
    help: "Revocation notices (per peer) not yet delivered",
    registers: [deps.metrics],
    collect: async function (this: Gauge) {
      this.set(await deps.tables.pending().catch(() => 0));
    },
  });
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  /** Wake-ups (a notice queued on any instance) counted, so a pass started earlier goes on. */
  let wakeups = 0;
  let stopped = true;

  const backoff = (attempts: number): number =>
    Math.min(
      deps.config.initial_backoff_seconds * 2 ** Math.max(attempts - 1, 0),
      deps.config.max_backoff_seconds,
    ) * 1000;

  const deliver = async (row: OutboxRow): Promise<void> => {
    const now = new Date();
    try {
      await deps.peers.postJson(row.peer, REVOCATIONS_PATH, { notice: row.notice }, deps.config.timeout_ms);
      await deps.tables.delivered(row.jti, row.peer, new Date());
      sent.inc({ direction: "sent", outcome: "delivered" });
      await deps.audit.record({
        actor: `@medmesh:${deps.serverName}`,
        on_behalf_of: row.user_id,
        action: "identity.revocation.sent",
        object: row.user_id,
        outcome: "delivered",
        details: { peer: row.peer, jti: row.jti, attempts: row.attempts + 1 },
      });
    } catch (err) {
      const attempts = row.attempts + 1;
      const message = err instanceof PeerError ? err.message : (err as Error).message;
      const giveUp =
        now.getTime() - new Date(row.created_at).getTime() > deps.config.give_up_hours * 3_600_000;
      const next = giveUp ? undefined : new Date(now.getTime() + backoff(attempts));
      await deps.tables.failed(row.jti, row.peer, attempts, next, message, now);
      sent.inc({ direction: "sent", outcome: giveUp ? "given_up" : "retry" });
      deps.log.warn(
        { peer: row.peer, user_id: row.user_id, attempts, error: message, given_up: giveUp },
        giveUp ? "revocation notice given up" : "revocation notice not delivered yet; will retry",
      );
      if (giveUp)
        await deps.audit.record({
          actor: `@medmesh:${deps.serverName}`,
          on_behalf_of: row.user_id,
          action: "identity.revocation.sent",
          object: row.user_id,
          outcome: "given_up",
          details: { peer: row.peer, jti: row.jti, attempts },
        });
    }
  };

  /** Delivers everything due now, then sleeps until the next row is due (or a wake-up). */
  /** The wake-ups a finished pass had seen: one that came later starts another pass. */
  let covered = 0;
  const pass = async (): Promise<void> => {
    for (;;) {
      const seen = wakeups;
      const rows = await deps.tables.claimDue(new Date(), BATCH, CLAIM_MS);
      // One slow peer does not hold the others back: a batch goes out at once.
      await Promise.all(rows.map(deliver));
      if (rows.length === BATCH || wakeups !== seen) continue;
      const next = await deps.tables.nextDue();
      if (wakeups !== seen) continue;
      covered = seen;
      schedule(next);
      return;
    }
  };

  const run = (): void => {
    if (stopped) return;
    wakeups++;
    if (running) return;
    running = pass()
      .catch((err: unknown) => {
        covered = wakeups;
        deps.log.error({ err }, "revocation outbox pass failed; trying again shortly");
        schedule(new Date(Date.now() + 5000));
      })
      .finally(() => {
        running = undefined;
        // Woken while this pass was ending (a notice queued as it checked): go again.
        if (wakeups !== covered) run();
      });
  };

  const schedule = (at: Date | undefined): void => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    if (!at || stopped) return;
    // Checked at least every minute: a claim another instance lost comes due without a wake-up.
    timer = setTimeout(run, Math.min(Math.max(at.getTime() - Date.now(), 0), 60_000));
    timer.unref();
  };

  return {
    /**
     * A clinician of this organisation lost verified status: queue a signed notice for every
     * trusted peer (durably, before returning), then deliver.
     */
    async revoked(userId: string, at = new Date()): Promise<string | undefined> {
      if (!deps.orgKey) {
        deps.log.warn({ user_id: userId }, "no organisation key: peers are not told about a revocation");
        return undefined;
      }
      const jti = randomBytes(16).toString("base64url");
      const seconds = Math.floor(at.getTime() / 1000);
      const notice = signRevocation(deps.orgKey, {
        iss: deps.serverName,
        sub: userId,
        status: "revoked",
        revoked_at: seconds,
        jti,
        iat: Math.floor(Date.now() / 1000),
      });
      const peers = deps.peerServers().filter((s) => s !== deps.serverName);
      await deps.tables.enqueue(
        peers.map((peer) => ({
          jti,
          peer,
          user_id: userId,
          notice,
          attempts: 0,
          next_attempt_at: at,
          created_at: at,
        })),
      );
      await deps.audit.record({
        actor: `@medmesh:${deps.serverName}`,
        on_behalf_of: userId,
        action: "identity.revocation.queued",
        object: userId,
        outcome: "queued",
        details: { jti, peers: peers.length },
      });
      await deps.notifications.notify(OUTBOX_CHANNEL, jti).catch(() => undefined);
      run();
      return jti;
    },
    async start(): Promise<void> {
      stopped = false;
      await deps.notifications.listen(OUTBOX_CHANNEL, run, run);
      run(); // what a previous run left (a restart, a peer that was down)
    },
    async stop(): Promise<void> {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
    /** Delivers what is due now (tests). */
    flush: (): Promise<void> => {
      run();
      return running ?? Promise.resolve();
    },
  };
}
export type RevocationOutbox = ReturnType<typeof createRevocationOutbox>;
