import { hostname } from "node:os";
import {
  createLeaderCalls,
  createLeadership,
  type LeaderCalls,
  type Leadership,
  type MountContext,
} from "@medmesh/common";
import type { PolicyModuleConfig } from "./config.ts";
import { BOTS_JOB, neverLeader } from "./bot/index.ts";

/**
 * This replica's place among the policy module's replicas (docs/replicas.md): the leader election
 * of its singleton jobs, and the calls that need the E2EE bots' leader (a channel post, a
 * department's ending), run here or sent to the replica that leads BOTS_JOB.
 *
 * The holder of a lease is the replica's internal URL (`leader.advertise_url`, by default built
 * from the listener): the standbys reach the leader there, and a process restarted in its own
 * place (same host and port — two live processes cannot share it) takes its leases back at once.
 */
export function replicaRoles(
  config: PolicyModuleConfig,
  ctx: MountContext,
): { leadership: Leadership; botCalls: LeaderCalls } {
  const self = config.leader.advertise_url ?? defaultHolder(config.listen, hostname());
  const leadership = createLeadership({
    leases: ctx.store.leases,
    knex: ctx.store.knex,
    config: config.leader,
    log: ctx.log,
    metrics: ctx.metrics,
    ...(self ? { holder: self } : {}),
  });
  // The E2EE bots (verification, channels, departments) run on one replica: BOTS_JOB's leader
  // among those configured with `identity.bot` (the others never campaign for it, but call it).
  const botCalls = createLeaderCalls({
    leader: config.identity.bot
      ? leadership.job(BOTS_JOB)
      : neverLeader(BOTS_JOB, () => leadership.holderOf(BOTS_JOB)),
    self: leadership.holder,
    secret: ctx.registration.as_token,
    log: ctx.log,
    metrics: ctx.metrics,
  });
  return { leadership, botCalls };
}

/**
 * The holder (and internal URL) of a replica without `leader.advertise_url`. Bound to every
 * address: reached at the host name. Bound to one address (loopback, as the local runner does):
 * reached there, and the host name as the URL's fragment keeps each host's replica its own holder —
 * two hosts' replicas with one config must never share a lease. No fixed port: none (a random one).
 */
export function defaultHolder(listen: { host: string; port: number }, hostName: string): string | undefined {
  if (!listen.port) return undefined;
  const wildcard = listen.host === "0.0.0.0" || listen.host === "::";
  const address = wildcard ? hostName : listen.host.includes(":") ? `[${listen.host}]` : listen.host;
  return `http://${address}:${String(listen.port)}${wildcard ? "" : `#${hostName}`}`;
}
