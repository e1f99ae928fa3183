import { Refusal, type Route } from "../proxy/index.ts";
import type { IdentityDocuments } from "../identity/records.ts";
import type { Verifier } from "../identity/verifier.ts";
import { audited, consoleRoute, json, localUser, type ApiDeps } from "./http.ts";

export interface ReviewDeps extends ApiDeps {
  verifier: () => Verifier | undefined;
  documents: IdentityDocuments;
}

const identity = (d: ReviewDeps): Verifier => {
  const v = d.verifier();
  if (!v) throw new Refusal(503, "M_UNAVAILABLE", "Identity is still starting; try again shortly");
  return v;
};

/**
 * The verification queue: the identity service's reviews, with the registry's answer beside the
 * document. The document is sent to the page with `no-store` (shown, never kept by the browser).
 */
export function reviewRoutes(d: ReviewDeps): Route[] {
  return [
    consoleRoute(d, "GET", "/reviews", "reviews.read", async () => {
      const queue = await identity(d).reviewQueue();
      return json({
        reviews: queue.map((r) => ({
          user_id: r.user_id,
          registry: r.registry,
          claimed_name: r.claimed_name,
          registered_name: r.registered_name,
          profession: r.profession,
          specialisms: r.specialisms,
          since: r.updated_at.toISOString(),
        })),
      });
    }),
    consoleRoute(d, "GET", "/reviews/{}/document", "reviews.read", async (_ctx, actor, [raw = ""]) => {
      const userId = localUser(raw, d.serverName);
      const doc = await d.documents.get(userId);
      if (!doc) throw new Refusal(404, "M_NOT_FOUND", `No ID document of ${userId} is waiting for review`);
      await audited(d, actor, "document_viewed", userId, "ok");
      return {
        status: 200,
        body: doc.data,
        contentType: doc.content_type,
        headers: { "cache-control": "no-store", "content-disposition": "inline" },
      };
    }),
    consoleRoute(d, "POST", "/reviews/{}", "reviews.decide", async (ctx, actor, [raw = ""]) => {
      const userId = localUser(raw, d.serverName);
      const body = await ctx.json(16 * 1024);
      if (body.decision !== "approve" && body.decision !== "reject")
        throw new Refusal(400, "M_INVALID_PARAM", 'decision must be "approve" or "reject"');
      const reason = typeof body.reason === "string" ? body.reason.trim() : "";
      if (body.decision === "reject" && !reason)
        throw new Refusal(400, "M_MISSING_PARAM", "Give the reason for a rejection; the user is told");
      const waiting = (await identity(d).reviewQueue()).some((r) => r.user_id === userId);
      if (!waiting) throw new Refusal(404, "M_NOT_FOUND", `${userId} has no ID document waiting for review`);
      // The identity service records the decision itself (identity.review, the reviewer as actor).
      const outcome = await identity(d).review(userId, body.decision === "approve", reason, actor.userId);
      return json(outcome);
    }),
  ];
}
