import { z } from "zod";

const UserId = z
  .string()
  .max(255)
  .regex(/^@[^:]+:.+$/, "must be a Matrix user ID (@name:server)");

/** What an organisation's admin asks for when creating a channel (console and admin API). */
export const ChannelSpecSchema = z.strictObject({
  name: z.string().trim().min(1).max(200),
  topic: z.string().max(1000).optional(),
  /** organisation: this organisation's verified clinicians; network: also trusted organisations'. */
  scope: z.enum(["organisation", "network"]).default("organisation"),
  /** For a network channel: the organisations (server names) whose members are invited; none: every trusted one. */
  organisations: z.array(z.string().min(1).max(255)).max(100).default([]),
  /** The professions (as registries name them) that are invited; none: every verified clinician. */
  professions: z.array(z.string().trim().min(1).max(64)).max(20).default([]),
  /** Who may post: power level 50, the channel's events_default. */
  publishers: z
    .array(UserId)
    .max(50)
    .refine((p) => p.length > 0, {
      message: "A channel needs at least one publisher (the users who may post); none were given",
    }),
  /** Members may not leave: a leave is answered with a new invite (docs/channels.md). */
  mandatory: z.boolean().default(false),
});
export type ChannelSpec = z.output<typeof ChannelSpecSchema>;

/** The first problem of a request body, as one sentence naming the field. */
export function specProblem(error: z.ZodError): string {
  const issue = error.issues[0];
  const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
  return `Invalid channel: ${where}${issue?.message ?? "malformed"}`;
}

/** A post: text, and whether it is urgent (a recall). */
export const PostSchema = z.strictObject({
  body: z.string().min(1).max(20_000),
  urgent: z.boolean().default(false),
});

/** The marker an urgent post carries inside its (encrypted) content; clients show it as they like. */
export const URGENT_KEY = "org.medmesh.urgent";
/** Power levels: members read (0), publishers post (50), MedMesh's channel bot administers (100). */
export const PUBLISHER_LEVEL = 50;
