import { createHmac } from "node:crypto";
import express, { type Express } from "express";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import { bearerTokenCheck, type RouteGroup } from "../http/auth.ts";
import { ApiError, asyncHandler, ErrCode } from "../http/errors.ts";
import { LeadershipLost, type Leader } from "./leader.ts";

const PREFIX = "/_medmesh/replica/v1/";
const CALLS = `${PREFIX}calls/`;

/** An operation that needs the job's leader (its device, its timers): its arguments and result are JSON. */
export type LeaderOperation<A extends unknown[], R> = (...args: A) => Promise<R>;

/**
 * Operations that only the leader of a singleton job can carry out (the policy module's E2EE bots:
 * a channel post is sent from the channel bot's device), callable on every replica
 * (docs/replicas.md#calls-on-the-leader). Where this replica leads the job, an operation runs here;
 * elsewhere it is sent to the leader — the lease's holder is the leader's internal URL — and its
 * answer (or its error, with the same errcode) is returned as if it had run here. A call the
 * leader receives while it no longer leads is refused (LeadershipLost), never sent on again: no
 * loops, and a caller is told at once rather than after a chain of hops.
 *
 * The replicas authenticate each other with a token derived from the appservice registration they
 * share (every replica of a service has it; nobody else on the internal listener does).
 */
export function createLeaderCalls(d: {
  leader: Leader;
  /** This replica's own holder (its URL): a lease naming it is never called over HTTP. */
  self: string;
  /** The appservice registration's `as_token`, shared by the replicas; the call token is derived from it. */
  secret: string;
  log: Logger;
  metrics: Registry;
  /** How long a forwarded call may take (a channel's creation invites its members first). */
  timeoutMs?: number;
}) {
  const token = createHmac("sha256", d.secret).update(`medmesh leader calls ${d.leader.job}`).digest("hex");
  const timeoutMs = d.timeoutMs ?? 120_000;
  const operations = new Map<string, (args: unknown[]) => Promise<unknown>>();
  const forwarded = new Counter({
    name: "medmesh_leader_calls_total",
    help: "Operations that need a singleton job's leader, by where they ran (here, forwarded, received) and outcome",
    labelNames: ["job", "where", "outcome"] as const,
    registers: [d.metrics],
  });
  const count = (where: string, outcome: string): void => {
    forwarded.inc({ job: d.leader.job, where, outcome });
  };

  const forward = async (op: string, args: unknown[]): Promise<unknown> => {
    const holder = await d.leader.current();
    // No leader now (the lease ran out), or one this replica cannot address: the caller is told.
    if (!holder || holder === d.self || !/^https?:\/\//.test(holder)) throw new LeadershipLost(d.leader.job);
    let res: Response;
    try {
      res = await fetch(new URL(`${CALLS}${encodeURIComponent(op)}`, holder), {
        method: "POST",
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        body: JSON.stringify({ args }),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      d.log.warn({ err, job: d.leader.job, op, leader: holder }, "the job's leader could not be reached");
      count("forwarded", "unreachable");
      throw new ApiError(
        "M_UNAVAILABLE",
        `The replica that leads ${d.leader.job} (${holder}) could not be reached: try again shortly`,
      );
    }
    const body = (await res.json().catch(() => ({}))) as {
      result?: unknown;
      errcode?: string;
      error?: string;
    };
    if (res.ok) {
      count("forwarded", "ok");
      return body.result;
    }
    count("forwarded", "refused");
    const errcode = body.errcode && body.errcode in ErrCode ? (body.errcode as ErrCode) : "M_UNKNOWN";
    throw new ApiError(errcode, body.error ?? `The leader of ${d.leader.job} answered ${String(res.status)}`);
  };

  return {
    /** The job's leader handle the calls follow. */
    leader: d.leader,
    /**
     * The operation, callable on any replica. `decode` rebuilds what JSON does not carry (dates)
     * in a result that came from the leader.
     */
    define: <A extends unknown[], R>(
      op: string,
      run: LeaderOperation<A, R>,
      decode: (json: unknown) => R = (json) => json as R,
    ): LeaderOperation<A, R> => {
      if (operations.has(op)) throw new Error(`leader operation ${op} defined twice`);
      operations.set(op, (args) => run(...(args as A)));
      return async (...args: A): Promise<R> => {
        if (d.leader.isLeader()) {
          count("here", "run");
          return run(...args);
        }
        return decode(await forward(op, args));
      };
    },
    /** Checks a call's token (the route group's check, below). */
    authenticate: bearerTokenCheck(token, "replica call token"),
    /** Serves the calls other replicas send to this one while it leads the job. */
    mount(app: Express): void {
      app.post(
        `${CALLS}:op`,
        express.json({ limit: "1mb" }),
        asyncHandler(async (req, res) => {
          const op = String(req.params.op);
          const run = operations.get(op);
          if (!run) throw new ApiError("M_UNRECOGNIZED", `No leader operation ${op}`);
          const args = (req.body as { args?: unknown }).args;
          if (!Array.isArray(args)) throw new ApiError("M_BAD_JSON", "args must be an array");
          // Sent here because this replica led the job a moment ago; if it no longer does, refused.
          if (!d.leader.isLeader()) {
            count("received", "not_leader");
            throw new LeadershipLost(d.leader.job);
          }
          const result = await run(args);
          count("received", "ok");
          res.json({ result });
        }),
      );
    },
  };
}
export type LeaderCalls = ReturnType<typeof createLeaderCalls>;

/**
 * The calls' route group on the internal listener. Listeners are set up before the registration
 * (from which the token is derived) is read: the check asks the calls once they exist.
 */
export function leaderCallsRouteGroup(calls: () => LeaderCalls | undefined): RouteGroup {
  return {
    prefix: PREFIX,
    description:
      "the other replicas, calling a singleton job's leader (a token derived from the registration)",
    authenticate: (req) =>
      calls()?.authenticate(req) ??
      Promise.reject(new ApiError("M_UNAVAILABLE", "Not ready for replica calls")),
  };
}
