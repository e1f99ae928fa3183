import { ApiError, asyncHandler } from "@medmesh/common";
import type { Express } from "express";
import type { PolicyModuleConfig } from "./config.ts";
import type { Identity } from "./identity/service.ts";
import type { Retention } from "./retention/index.ts";
import type { TrustManager } from "./trust/index.ts";

/**
 * The operators' routes on the internal listener (admins only, the frame's default): the trust
 * list in force, retention's index and its sweep on demand, re-verification and a user's status.
 * The capabilities start with the proxy role; until then these answer 503.
 */
export function mountOperatorRoutes(
  app: Express,
  d: {
    config: PolicyModuleConfig;
    trust: () => TrustManager | undefined;
    retention: () => Retention | undefined;
    identity: () => Identity | undefined;
  },
): void {
  const { config } = d;
  const running = <T>(what: string, get: () => T | undefined): T => {
    const v = get();
    if (!v) throw new ApiError("M_UNAVAILABLE", `${what} is not running (no proxy role)`);
    return v;
  };
  app.get("/_medmesh/admin/v1/trust", (_req, res) => {
    const trust = d.trust();
    res.json(trust ? trust.status() : { configured: false });
  });
  app.get(
    "/_medmesh/admin/v1/retention/status",
    asyncHandler(async (_req, res) => {
      const retention = running("retention", d.retention);
      res.json(await retention.index.status());
    }),
  );
  app.post(
    "/_medmesh/admin/v1/retention/backfill",
    asyncHandler(async (_req, res) => {
      const retention = running("retention", d.retention);
      res.json(await retention.backfill.all());
    }),
  );
  app.post(
    "/_medmesh/admin/v1/retention/sweep",
    asyncHandler(async (req, res) => {
      const retention = running("retention", d.retention);
      const body = (req.body ?? {}) as { now?: unknown };
      if (body.now !== undefined && !config.retention.allow_clock_override)
        throw new ApiError(
          "M_FORBIDDEN",
          "retention.allow_clock_override is off: the sweep uses the real clock",
        );
      const now = typeof body.now === "string" ? new Date(body.now) : new Date();
      if (Number.isNaN(now.getTime())) throw new ApiError("M_INVALID_PARAM", "now must be an ISO date-time");
      res.json(await retention.sweeper.run(now));
    }),
  );
  app.post(
    "/_medmesh/admin/v1/identity/reverify",
    asyncHandler(async (_req, res) => {
      const identity = running("identity", d.identity);
      res.json(await identity.reverifier.run());
    }),
  );
  app.get(
    "/_medmesh/admin/v1/identity/users/:userId",
    asyncHandler(async (req, res) => {
      const identity = running("identity", d.identity);
      const userId = String(req.params.userId);
      const local = userId.endsWith(`:${config.homeserver.server_name}`);
      const verified = local
        ? await identity.clinicians.isVerified(userId)
        : await identity.remote.isVerified(userId);
      res.json({ user_id: userId, verified, source: local ? "local" : "attestation" });
    }),
  );
}
