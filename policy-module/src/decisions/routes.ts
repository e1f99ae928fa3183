import type { Express } from "express";
import type { z } from "zod";
import type { Logger } from "pino";
import { Counter, Histogram, type Registry } from "prom-client";
import { ApiError, asyncHandler, bearerTokenCheck, type RouteGroup } from "@medmesh/common";
import type { Decision } from "../proxy/policy.ts";
import type { Decider } from "./decider.ts";
import { QUESTIONS, type Check } from "./questions.ts";

export const DECIDE_PATH = "/_medmesh/decide/v1";

/** The decision API's own authentication on the internal listener: the decision token. */
export function decisionRouteGroup(token: string): RouteGroup {
  return {
    prefix: "/_medmesh/decide/",
    description: "Synapse's MedMesh module (the decision token)",
    authenticate: bearerTokenCheck(token, "decision token", "M_UNKNOWN_TOKEN"),
  };
}

/**
 * The decision API Synapse's module calls: `POST /_medmesh/decide/v1/{check}` with the decision
 * token. Always 200 with `{allow}` (and `errcode`, `error` when refused) for a well-formed
 * question; the module treats anything else as a refusal.
 */
export function mountDecisionApi(
  app: Express,
  deps: { decider: () => Decider | undefined; log: Logger; metrics: Registry },
): void {
  const decisions = new Counter({
    name: "medmesh_decisions_total",
    help: "Decisions asked by Synapse's MedMesh module, by check and outcome",
    labelNames: ["check", "outcome"] as const,
    registers: [deps.metrics],
  });
  const seconds = new Histogram({
    name: "medmesh_decision_seconds",
    help: "Time to answer a decision asked by Synapse's MedMesh module",
    labelNames: ["check"] as const,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1],
    registers: [deps.metrics],
  });
  app.post(
    `${DECIDE_PATH}/:check`,
    asyncHandler(async (req, res) => {
      const check = String(req.params.check);
      if (!Object.hasOwn(QUESTIONS, check)) throw new ApiError("M_UNRECOGNIZED", `Unknown check ${check}`);
      const decider = deps.decider();
      if (!decider) throw new ApiError("M_UNAVAILABLE", "The policy module's rules are not running yet");
      if (check === "room_defaults") {
        // Not a refusal point: the request as the profile completes it (user_may_create_room decides).
        const config = decider.roomDefaults(parse(check, QUESTIONS.room_defaults, req.body));
        decisions.inc({ check, outcome: "allowed" });
        res.json(config ? { allow: true, config } : { allow: true });
        return;
      }
      const end = seconds.startTimer({ check });
      const decision = await decide(decider, check as Check, req.body);
      end();
      decisions.inc({ check, outcome: decision.allowed ? "allowed" : "refused" });
      if (decision.allowed) {
        res.json({ allow: true });
        return;
      }
      deps.log.info({ check, reason: decision.reason }, "refused at Synapse's decision point");
      res.json({ allow: false, errcode: "M_FORBIDDEN", error: decision.reason });
    }),
  );
}

function decide(decider: Decider, check: Check, body: unknown): Promise<Decision> | Decision {
  const q = QUESTIONS;
  switch (check) {
    case "invite":
      return decider.invite(parse(check, q.invite, body));
    case "invite_3pid":
      return decider.threepidInvite(parse(check, q.invite_3pid, body));
    case "create_room":
      return decider.createRoom(parse(check, q.create_room, body));
    case "join":
      return decider.join(parse(check, q.join, body));
    case "publish":
      return decider.publish(parse(check, q.publish, body));
    case "state_event":
      return decider.stateEvent(parse(check, q.state_event, body));
    case "message":
      return decider.message(parse(check, q.message, body));
    case "sso_claims":
      return decider.ssoClaims(parse(check, q.sso_claims, body));
    case "room_defaults":
      return { allowed: true }; // answered in the route (it returns a config)
    case "sso_login":
      return decider.ssoLogin(parse(check, q.sso_login, body));
    case "account_status":
      return decider.accountStatus(parse(check, q.account_status, body));
  }
}

function parse<T>(check: Check, schema: z.ZodType<T>, body: unknown): T {
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    throw new ApiError("M_BAD_JSON", `Malformed ${check} question: ${parsed.error.issues[0]?.message ?? ""}`);
  }
  return parsed.data;
}
