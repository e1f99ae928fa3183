import { ApiError, asyncHandler } from "@medmesh/common";
import type { Express } from "express";
import type { AuditService } from "./service.ts";

/** Internal listener (operators and monitoring): the same report as `medmesh audit verify`. */
export function mountAuditApi(app: Express, audit: AuditService): void {
  app.get(
    "/_medmesh/admin/v1/audit/verify",
    asyncHandler(async (_req, res) => {
      // A broken chain is a successful check with a bad result: 200, and `ok` says which.
      res.json(await audit.verify());
    }),
  );
  app.post(
    "/_medmesh/admin/v1/audit/anchor",
    asyncHandler(async (_req, res) => {
      const result = await audit.anchorNow();
      if (!result)
        throw new ApiError("M_UNAVAILABLE", "anchoring is off: set audit.anchor_file and organisation");
      res.json(
        "refused" in result
          ? { anchored: false, refused: result.refused }
          : { anchored: result.anchored, anchor: result.anchor ?? null },
      );
    }),
  );
}
