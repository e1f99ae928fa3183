import { z } from "zod";

export const AuditConfigSchema = z
  .object({
    anchor_file: z
      .string()
      .min(1)
      .optional()
      .describe(
        "File (outside the database) the signed heads of the audit chain are appended to; needs `organisation`. " +
          "Without it, deleting the newest audit records goes unnoticed.",
      )
      .meta({ examples: ["/var/lib/medmesh/audit-anchors.jsonl"] }),
    anchor_interval_seconds: z
      .number()
      .int()
      .min(1)
      .default(300)
      .describe(
        "How often the chain's head is signed (also at each start); records newer than that are not yet anchored.",
      ),
  })
  .describe("The tamper-evident audit log's anchors (docs/audit.md).");
export type AuditConfig = z.output<typeof AuditConfigSchema>;
