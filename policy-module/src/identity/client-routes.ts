import { Refusal, route, type Route } from "../proxy/index.ts";
import type { IdentityDocuments } from "./records.ts";
import type { Verifier } from "./verifier.ts";

/**
 * The identity capability's client API, answered by the proxy for the authenticated user: the
 * user's own verification and ID document, and the organisation admins' review queue.
 */
export function identityClientRoutes(d: {
  verifier: Verifier;
  documents: IdentityDocuments;
  idDocument: { content_types: string[]; max_bytes: number };
  /** Refuses anyone who is not one of the organisation's admins. */
  requireAdmin: (userId: string) => Promise<void>;
}): Route[] {
  const clientRoutes: Route[] = [
    route("POST", "^/_medmesh/identity/v1/verification", async (ctx) => {
      const requester = await ctx.requireRequester();
      const body = await ctx.json(64 * 1024);
      const field = (name: string): string => {
        const v = body[name];
        if (typeof v !== "string") throw new Refusal(400, "M_MISSING_PARAM", `${name} is required`);
        return v;
      };
      const outcome = await d.verifier.start(requester.userId, {
        registry: field("registry"),
        number: field("number"),
        claimed_name: field("claimed_name"),
      });
      return { status: 200, body: outcome };
    }),
    route("GET", "^/_medmesh/identity/v1/verification", async (ctx) => {
      const requester = await ctx.requireRequester();
      const status = await d.verifier.status(requester.userId);
      if (!status) throw new Refusal(404, "M_NOT_FOUND", "You have not asked to be verified yet");
      return { status: 200, body: status };
    }),
  ];

  const REVIEWS = "^/_medmesh/admin/v1/identity/reviews";
  clientRoutes.push(
    route("PUT", "^/_medmesh/identity/v1/document", async (ctx) => {
      const requester = await ctx.requireRequester();
      const type = (ctx.req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
      if (!d.idDocument.content_types.includes(type)) {
        throw new Refusal(
          400,
          "M_INVALID_PARAM",
          `Upload the document as ${d.idDocument.content_types.join(", ")}`,
        );
      }
      const data = await ctx.body(d.idDocument.max_bytes);
      if (data.length === 0) throw new Refusal(400, "M_INVALID_PARAM", "The document is empty");
      return { status: 200, body: await d.verifier.documentUploaded(requester.userId, type, data) };
    }),
    route("GET", REVIEWS, async (ctx) => {
      await d.requireAdmin((await ctx.requireRequester()).userId);
      const queue = await d.verifier.reviewQueue();
      return {
        status: 200,
        body: {
          reviews: queue.map((r) => ({
            user_id: r.user_id,
            registry: r.registry,
            profession: r.profession,
            registered_name: r.registered_name,
            claimed_name: r.claimed_name,
            since: r.updated_at.toISOString(),
            // The account that holds the number this one claims (identity.duplicate_number: review).
            ...(r.conflict_with === undefined ? {} : { conflict: { user_id: r.conflict_with } }),
          })),
        },
      };
    }),
    route("GET", `${REVIEWS}/{}/document`, async (ctx, [userId = ""]) => {
      await d.requireAdmin((await ctx.requireRequester()).userId);
      const doc = await d.documents.get(userId);
      if (!doc) throw new Refusal(404, "M_NOT_FOUND", `No ID document of ${userId} is waiting for review`);
      return { status: 200, body: doc.data, contentType: doc.content_type };
    }),
    route("POST", `${REVIEWS}/{}`, async (ctx, [userId = ""]) => {
      const reviewer = (await ctx.requireRequester()).userId;
      await d.requireAdmin(reviewer);
      const body = await ctx.json(16 * 1024);
      if (body.decision !== "approve" && body.decision !== "reject") {
        throw new Refusal(400, "M_INVALID_PARAM", 'decision must be "approve" or "reject"');
      }
      const reason = typeof body.reason === "string" ? body.reason : "";
      if (body.decision === "reject" && !reason.trim()) {
        throw new Refusal(400, "M_MISSING_PARAM", "Give the reason for a rejection; the user is told");
      }
      return {
        status: 200,
        body: await d.verifier.review(userId, body.decision === "approve", reason, reviewer),
      };
    }),
  );
  return clientRoutes;
}
