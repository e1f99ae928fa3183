import type { JsonWebKey } from "node:crypto";
import type { AuditLog, NotificationStore } from "@medmesh/common";
import type { Logger } from "pino";
import { Counter, type Registry } from "prom-client";
import { parseXMatrix, Refusal } from "../proxy/index.ts";
import type { PeerRoute } from "../peer-api.ts";
import { REVOCATIONS_PATH, RevocationError, verifyRevocation } from "./revocation-notice.ts";
import type { RevocationTables } from "./revocation-store.ts";

/** Announced (user ID as payload) when a peer's revocation of its user was recorded here. */
export const REMOTE_REVOKED_CHANNEL = "medmesh_identity_remote_revoked";

export type NoticeCounter = Counter<"direction" | "outcome">;

export function revocationNoticeCounter(metrics: Registry): NoticeCounter {
  return new Counter({
    name: "medmesh_identity_revocation_notices_total",
    help: "Revocation notices by direction (sent, received) and outcome (delivered, retry, given_up; applied, duplicate, refused)",
    labelNames: ["direction", "outcome"] as const,
    registers: [metrics],
  });
}

/**
 * The receiving side: `POST /_medmesh/identity/v1/revocations` on the federation port. The peer
 * API has checked the request's signature (over the body) against the sending organisation's key;
 * here the notice itself must be signed by that organisation, about one of its own users. A new
 * notice is recorded (once per jti), announced to every instance on the store (they drop what they
 * remember of the user's attestation), audited, and the user's badges in this organisation's rooms
 * are rewritten (`applied`, in the background: the sender need not wait for the rooms).
 */
export function createRevocationReceiver(deps: {
  serverName: string;
  tables: RevocationTables;
  attestationKeys(server: string): JsonWebKey[];
  notifications: NotificationStore;
  audit: AuditLog;
  applied(userId: string): Promise<void>;
  notices: NoticeCounter;
  log: Logger;
}): PeerRoute {
  const refuse = async (origin: string, reason: string): Promise<never> => {
    deps.notices.inc({ direction: "received", outcome: "refused" });
    deps.log.warn({ origin, reason }, "revocation notice refused");
    await deps.audit.record({
      actor: origin,
      action: "identity.revocation.received",
      object: origin,
      outcome: "refused",
      details: { reason },
    });
    throw new Refusal(403, "M_FORBIDDEN", `Revocation notice refused: ${reason}`);
  };
  return {
    method: "POST",
    pattern: new RegExp(`^${REVOCATIONS_PATH}$`),
    handle: async (ctx) => {
      // The peer API verified the request signature of this origin.
      const origin = parseXMatrix(ctx.req.headers.authorization)?.origin ?? "";
      const body = await ctx.json(64 * 1024);
      if (typeof body.notice !== "string") throw new Refusal(400, "M_BAD_JSON", "notice must be a JWS");
      let notice;
      try {
        notice = verifyRevocation(body.notice, origin, deps.attestationKeys(origin));
      } catch (err) {
        if (err instanceof RevocationError) return refuse(origin, err.message);
        throw err;
      }
      const fresh = await deps.tables.received({
        jti: notice.jti,
        issuer: notice.iss,
        user_id: notice.sub,
        revoked_at: new Date(notice.revoked_at * 1000),
        received_at: new Date(),
      });
      if (!fresh) {
        deps.notices.inc({ direction: "received", outcome: "duplicate" });
        return { status: 200, body: { applied: false } };
      }
      deps.notices.inc({ direction: "received", outcome: "applied" });
      await deps.audit.record({
        actor: origin,
        on_behalf_of: notice.sub,
        action: "identity.revocation.received",
        object: notice.sub,
        outcome: "applied",
        details: { jti: notice.jti, revoked_at: new Date(notice.revoked_at * 1000).toISOString() },
      });
      await deps.notifications.notify(REMOTE_REVOKED_CHANNEL, notice.sub).catch((err: unknown) => {
        deps.log.warn({ err }, "could not announce a revocation to the other instances");
      });
      deps.applied(notice.sub).catch((err: unknown) => {
        deps.log.warn({ err, user_id: notice.sub }, "could not update badges after a revocation notice");
      });
      return { status: 200, body: { applied: true } };
    },
  };
}
