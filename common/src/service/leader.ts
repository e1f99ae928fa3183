import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Knex } from "knex";
import type { Logger } from "pino";
import { Gauge, Registry } from "prom-client";
import { z } from "zod";
import { ApiError } from "../http/errors.ts";
import type { LeaseStore } from "../store/store.ts";

export const LeaderConfigSchema = z
  .object({
    lease_seconds: z
      .number()
      .min(1)
      .max(3600)
      .default(30)
      .describe(
        "How long a leader's lease on a singleton job lasts unrenewed (renewed every third of it): a standby takes the job over at most this plus a third of it after its leader died.",
      ),
    advertise_url: z
      .url({ protocol: /^https?$/ })
      .optional()
      .describe(
        "The URL of this replica's internal listener as the other replicas reach it (operations that need a job's leader are sent there); it is also the replica's lease holder, so it must differ between replicas. Default: http://<listen.host>:<listen.port>#<host name>, or http://<host name>:<listen.port> when it binds every address.",
      ),
  })
  .describe(
    "Leader election for singleton jobs (retention sweep, re-verification, …) between the replicas on one store.",
  );
export type LeaderConfig = z.output<typeof LeaderConfigSchema>;

/** The job's lease is not (or no longer) this instance's: stop before doing more work. */
export class LeadershipLost extends ApiError {
  override name = "LeadershipLost";
  constructor(job: string) {
    super("M_UNAVAILABLE", `This instance does not lead ${job} (now): the replica that leads it runs it`);
  }
}

export interface Leader {
  readonly job: string;
  /**
   * Whether the last renewal succeeded and its lease has not run out by this host's clock since
   * (cheap: a check before each item). The clock part stops a process that was paused (SIGSTOP, a
   * VM freeze, a long GC) the moment it resumes, before its overdue renewal finds the lease taken.
   */
  isLeader(): boolean;
  /**
   * The fence, asked in the store: throws LeadershipLost unless this instance holds the lease now.
   * Inside an item's transaction the lease row stays share-locked until it commits, so a standby
   * takes the job over only after (or instead of) the item's writes — never alongside them.
   */
  fence(trx?: Knex): Promise<void>;
  /** Who holds the job's lease now (unexpired): its holder, or undefined. Asked in the store. */
  current(): Promise<string | undefined>;
  /** Called each time this instance becomes the leader: the first election or a standby taking over. */
  onElected(listener: () => void): void;
  /** Called each time this instance stops leading (a failed renewal, the fence finding the lease gone, a stop). */
  onLost(listener: () => void): void;
}

/**
 * Leases in the store (`leases` table) for the singleton jobs of a service's replicas: each job's
 * lease is held by one instance and renewed every third of `lease_seconds`; the other instances
 * are hot standbys that try to take it at the same rhythm, and one of them does once it ran out.
 * A leader whose renewal fails (or finds the lease taken) stops at once (`isLeader()` false; the
 * fence refuses), before the lease could have passed to another.
 */
export function createLeadership(d: {
  leases: LeaseStore;
  knex: Knex;
  config: LeaderConfig;
  log: Logger;
  metrics: Registry;
  /**
   * Who this instance is. A stable one (host and listener port) lets a process restarted in its
   * predecessor's place take its leases back at once; two live processes cannot share it.
   */
  holder?: string;
}) {
  const holder = d.holder ?? `${hostname()}-${String(process.pid)}-${randomBytes(4).toString("hex")}`;
  const ttlMs = d.config.lease_seconds * 1000;
  const gauge = new Gauge({
    name: "medmesh_leader",
    help: "1 while this instance leads the singleton job (holds its lease), 0 while it stands by",
    labelNames: ["job"] as const,
    registers: [d.metrics],
  });
  interface JobState {
    leading: boolean;
    /** When the lease runs out unrenewed, by this host's clock (counted from before the renewal asked). */
    validUntil: number;
    listeners: (() => void)[];
    lost: (() => void)[];
  }
  const leads = (state: JobState): boolean => state.leading && Date.now() < state.validUntil;
  const jobs = new Map<string, JobState>();
  const lose = (job: string, state: JobState): void => {
    state.leading = false;
    gauge.set({ job }, 0);
    for (const listener of state.lost) listener();
  };
  const holderOf = async (job: string): Promise<string | undefined> => {
    const row = await d
      .knex<{ holder: string }>("leases")
      .where("name", job)
      .andWhere("expires_at", ">", new Date())
      .first("holder");
    return row?.holder;
  };
  let timer: NodeJS.Timeout | undefined;
  let ticking: Promise<void> | undefined;

  const renew = async (job: string): Promise<void> => {
    const state = jobs.get(job);
    if (!state) return;
    let held: boolean;
    const asked = Date.now();
    try {
      held = await d.leases.tryAcquire(job, holder, ttlMs);
    } catch (err) {
      // The store cannot say: fail closed (another may take it over once it runs out).
      d.log.warn({ err, job }, "could not renew a leader lease");
      held = false;
    }
    if (held) state.validUntil = asked + ttlMs;
    if (held === state.leading) return;
    if (!held) {
      d.log.warn({ job, holder }, "leadership lost: the job stops");
      lose(job, state);
      return;
    }
    state.leading = true;
    gauge.set({ job }, 1);
    d.log.info({ job, holder }, "elected leader");
    for (const listener of state.listeners) listener();
  };
  const tick = (): Promise<void> =>
    (ticking ??= Promise.all([...jobs.keys()].map(renew))
      .then(() => undefined)
      .finally(() => {
        ticking = undefined;
      }));

  return {
    holder,
    ttlMs,
    /** Who holds a job's lease now (unexpired), whether or not this instance campaigns for it. */
    holderOf,
    /** The leader handle of `job` (elected at the next tick; `start` runs the first one). */
    job(job: string): Leader {
      if (!jobs.has(job)) {
        jobs.set(job, { leading: false, validUntil: 0, listeners: [], lost: [] });
        gauge.set({ job }, 0);
      }
      const state = jobs.get(job) ?? { leading: false, validUntil: 0, listeners: [], lost: [] };
      return {
        job,
        isLeader: () => leads(state),
        fence: async (trx = d.knex) => {
          if (!leads(state)) throw new LeadershipLost(job);
          const rows = await trx.raw<{ rows: unknown[] }>(
            "SELECT 1 FROM leases WHERE name = ? AND holder = ? AND expires_at > ? FOR SHARE",
            [job, holder, new Date()],
          );
          if (rows.rows.length === 0) {
            lose(job, state);
            throw new LeadershipLost(job);
          }
        },
        current: () => holderOf(job),
        onElected: (listener) => {
          state.listeners.push(listener);
        },
        onLost: (listener) => {
          state.lost.push(listener);
        },
      };
    },
    /** Runs the first election (awaited), then renews and stands by every third of the lease. */
    async start(): Promise<void> {
      await tick();
      timer = setInterval(() => void tick(), Math.max(100, Math.floor(ttlMs / 3)));
      timer.unref(); // the service's own handles keep it running, not the renewals
    },
    /** Stops renewing and hands the leases over at once (a clean stop needs no wait for expiry). */
    async stop(): Promise<void> {
      clearInterval(timer);
      await ticking;
      for (const [job, state] of jobs) {
        if (!state.leading) continue;
        lose(job, state);
        await d.leases.release(job, holder).catch((err: unknown) => {
          d.log.warn({ err, job }, "could not release a leader lease");
        });
      }
    },
  };
}
export type Leadership = ReturnType<typeof createLeadership>;

/** One job's leader on its own (a tool, a bench, a single-instance test): elected before it returns. */
export async function electedLeader(
  store: { leases: LeaseStore; knex: Knex },
  job: string,
  log: Logger,
  holder?: string,
): Promise<Leader & { stop(): Promise<void> }> {
  const leadership = createLeadership({
    leases: store.leases,
    knex: store.knex,
    config: { lease_seconds: 60 },
    log,
    metrics: new Registry(),
    ...(holder === undefined ? {} : { holder }),
  });
  const leader = leadership.job(job);
  await leadership.start();
  if (!leader.isLeader()) throw new LeadershipLost(job);
  return { ...leader, stop: () => leadership.stop() };
}
