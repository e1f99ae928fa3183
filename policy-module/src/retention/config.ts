import { z } from "zod";

const DAY_MS = 86_400_000;

export const RetentionConfigSchema = z
  .object({
    enabled: z.boolean().default(true).describe("Run the retention sweep."),
    default_days: z.number().positive().default(30).describe("How long a message lives."),
    min_days: z.number().positive().default(1).describe("The shortest period a room's admins may choose."),
    max_days: z
      .number()
      .positive()
      .default(30)
      .describe("The longest period a room's admins may choose (a longer m.room.retention is reset)."),
    max_keep_days: z
      .number()
      .positive()
      .default(180)
      .describe(
        "How long a kept (pinned) message may live at most, counted from when it was sent; then it goes like any other.",
      ),
    schedule: z
      .string()
      .default("*/10 * * * *")
      .describe("Cron schedule of the sweep (one instance runs it)."),
    batch_size: z.number().int().positive().max(10_000).default(200).describe("Events per sweep batch."),
    allow_clock_override: z
      .boolean()
      .default(false)
      .describe("Tests only: the sweep endpoint accepts a `now`. Never in production."),
  })
  .refine((c) => c.min_days <= c.default_days && c.default_days <= c.max_days, {
    message: "min_days ≤ default_days ≤ max_days must hold",
  })
  .refine((c) => c.max_keep_days >= c.max_days, { message: "max_keep_days must be at least max_days" })
  .describe("30-day retention: redacted across the federation, purged locally, media included.");
export type RetentionConfig = z.output<typeof RetentionConfigSchema>;

export const days = (n: number): number => Math.round(n * DAY_MS);

/** The room state event carrying a room's retention period (MSC1763). */
export const RETENTION_EVENT = "m.room.retention";
