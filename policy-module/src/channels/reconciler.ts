import { randomBytes } from "node:crypto";
import type { AppserviceEvent, AuditLog, LeaseStore } from "@medmesh/common";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import type { Publisher } from "./publisher.ts";
import type { Channel, ChannelsStore } from "./store.ts";

const LEASE = "channels-reconcile";
const LEASE_MS = 5 * 60_000;
const CONCURRENCY = 8;

export interface Member {
  user_id: string;
  profession: string;
}

export interface ReconcileResult {
  ran: boolean;
  channels: number;
  invited: number;
  removed: number;
  /** Organisations whose members could not be read this cycle (nobody of theirs was removed). */
  unreachable: string[];
}

const serverOf = (userId: string): string => userId.slice(userId.indexOf(":") + 1);

/**
 * Keeps every channel's membership what its targets say: every verified clinician of the chosen
 * organisations and professions is invited (also those verified later); one who no longer is
 * (revoked, other profession) is removed. Someone who left a channel that is not mandatory is
 * not invited again. Runs on one instance at a time (a lease in the store).
 */
export function createReconciler(d: {
  serverName: string;
  channels: ChannelsStore;
  publisher: Publisher;
  botUserId: string;
  /** The room-admin bot, a member of every channel (retention, badges): never removed. */
  roomAdminBotUserId: string;
  leases: LeaseStore;
  audit: () => AuditLog | undefined;
  /** This organisation's verified clinicians now. */
  localMembers(): Member[];
  /** Another organisation's verified clinicians (its peer API); throws when it does not answer. */
  remoteMembers(server: string, professions: readonly string[]): Promise<Member[]>;
  /** The organisations on the trust list now. */
  trustedServers(): string[];
  log: Logger;
  metrics: Registry;
}) {
  const holder = `channels-${String(process.pid)}-${randomBytes(4).toString("hex")}`;
  const invites = new Counter({
    name: "medmesh_channel_invites_total",
    help: "Invites the channel reconciler sent, by reason (target, mandatory)",
    labelNames: ["reason"],
    registers: [d.metrics],
  });
  const seconds = new Histogram({
    name: "medmesh_channel_reconcile_seconds",
    help: "Time of one reconciliation cycle over every channel",
    buckets: [0.1, 0.5, 1, 5, 15, 60, 300],
    registers: [d.metrics],
  });

  const targetsOf = async (c: Channel, unreachable: Set<string>) => {
    const fits = (m: Member) => c.professions.length === 0 || c.professions.includes(m.profession);
    const targets = new Set(
      d
        .localMembers()
        .filter(fits)
        .map((m) => m.user_id),
    );
    const answered = new Set([d.serverName]);
    if (c.scope === "network") {
      const trusted = d.trustedServers().filter((s) => s !== d.serverName);
      const servers = c.organisations.length ? c.organisations.filter((s) => trusted.includes(s)) : trusted;
      await Promise.all(
        servers.map(async (s) => {
          try {
            for (const m of await d.remoteMembers(s, c.professions)) {
              if (serverOf(m.user_id) === s && fits(m)) targets.add(m.user_id);
            }
            answered.add(s);
          } catch (err) {
            unreachable.add(s);
            d.log.warn({ server: s, error: (err as Error).message }, "channel members of a peer unreadable");
          }
        }),
      );
    }
    return { targets, answered };
  };

  const inParallel = async <T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> => {
    const queue = [...items];
    await Promise.all(
      Array.from({ length: Math.min(CONCURRENCY, queue.length) }, async () => {
        for (let next = queue.shift(); next !== undefined; next = queue.shift()) await fn(next);
      }),
    );
  };

  const reconcileOne = async (c: Channel, result: ReconcileResult, unreachable: Set<string>) => {
    const { targets, answered } = await targetsOf(c, unreachable);
    const current = new Map((await d.publisher.members(c.room_id)).map((m) => [m.user_id, m]));
    const keep = new Set([d.botUserId, d.roomAdminBotUserId, ...c.publishers]);
    const toInvite = [...targets].filter((u) => {
      const m = current.get(u);
      if (!m) return true;
      // Left of their own accord: only a mandatory channel invites them again.
      return c.mandatory && m.membership === "leave" && m.sender === u;
    });
    for (const p of c.publishers) if (!current.has(p)) toInvite.push(p);
    const toRemove = [...current.values()].filter(
      (m) =>
        (m.membership === "join" || m.membership === "invite") &&
        !keep.has(m.user_id) &&
        !targets.has(m.user_id) &&
        answered.has(serverOf(m.user_id)),
    );
    await inParallel(toInvite, async (u) => {
      try {
        await d.publisher.invite(c.room_id, u);
        invites.inc({ reason: current.has(u) ? "mandatory" : "target" });
        result.invited++;
      } catch (err) {
        d.log.warn(
          { room_id: c.room_id, user_id: u, error: (err as Error).message },
          "channel invite failed",
        );
      }
    });
    await inParallel(toRemove, async (m) => {
      await d.publisher.kick(
        c.room_id,
        m.user_id,
        "No longer one of the verified clinicians this channel is for",
      );
      result.removed++;
    });
    if (toInvite.length || toRemove.length) {
      await d.audit()?.record({
        actor: d.botUserId,
        action: "channel.reconcile",
        object: c.room_id,
        outcome: "success",
        details: { invited: toInvite.length, removed: toRemove.length },
      });
    }
    await d.channels.reconciled(c.room_id, new Date());
  };

  // One cycle at a time in this process too (the lease is re-entrant for its holder): a channel's
  // creation, the periodic cycle and a verification change would otherwise invite the same people.
  let queue: Promise<unknown> = Promise.resolve();
  const run = (only?: string): Promise<ReconcileResult> => {
    const next = queue.then(() => runNow(only));
    queue = next.catch(() => undefined);
    return next;
  };

  /** One cycle over every channel (or one), on the instance that holds the lease. */
  const runNow = async (only?: string): Promise<ReconcileResult> => {
    const result: ReconcileResult = { ran: false, channels: 0, invited: 0, removed: 0, unreachable: [] };
    if (!(await d.leases.tryAcquire(LEASE, holder, LEASE_MS))) return result;
    const end = seconds.startTimer();
    const unreachable = new Set<string>();
    try {
      result.ran = true;
      for (const c of await d.channels.all()) {
        if (only && c.room_id !== only) continue;
        try {
          await reconcileOne(c, result, unreachable);
        } catch (err) {
          d.log.warn({ room_id: c.room_id, error: (err as Error).message }, "channel not reconciled");
        }
        result.channels++;
      }
    } finally {
      await d.leases.release(LEASE, holder);
      end();
    }
    result.unreachable = [...unreachable].sort();
    return result;
  };

  /**
   * A member's own leave from a mandatory channel, on whatever path it came (their client through
   * the proxy, straight to Synapse, their server over federation): invited again at once.
   */
  const onEvents = async (events: readonly AppserviceEvent[]): Promise<void> => {
    for (const e of events as (AppserviceEvent & { content?: { membership?: unknown } })[]) {
      if (e.type !== "m.room.member" || !e.room_id || !e.state_key) continue;
      if (e.content?.membership !== "leave" || e.sender !== e.state_key) continue;
      const c = await d.channels.get(e.room_id);
      if (!c?.mandatory) continue;
      try {
        await d.publisher.invite(c.room_id, e.state_key, `"${c.name}" is mandatory: you were invited again`);
        invites.inc({ reason: "mandatory" });
        await d.audit()?.record({
          actor: d.botUserId,
          action: "channel.reinvite",
          object: c.room_id,
          outcome: "success",
          on_behalf_of: e.state_key,
        });
      } catch (err) {
        d.log.warn(
          { room_id: c.room_id, user_id: e.state_key, error: (err as Error).message },
          "re-invite failed",
        );
      }
    }
  };
  return { run, onEvents };
}
export type Reconciler = ReturnType<typeof createReconciler>;
