import { z } from "zod";
import type { Decision } from "../proxy/policy.ts";

/**
 * A room's listing in the group directory: the state event `org.medmesh.group` (state key ""),
 * set by the room's admins with any Matrix client (the room's power levels decide who may).
 */
export const GROUP_EVENT = "org.medmesh.group";

export const GroupListingSchema = z.strictObject({
  listed: z.boolean(),
  /** Who may see and ask: this organisation's clinicians, or every trusted organisation's. */
  scope: z.enum(["organisation", "network"]).default("organisation"),
  /** The professions (as registries name them: "pharmacist", "physician", …) that may join; none: every verified clinician. */
  professions: z.array(z.string().trim().min(1).max(64)).max(20).default([]),
  description: z.string().max(1000).optional(),
});
export type GroupListing = z.infer<typeof GroupListingSchema>;

/** The decision on an `org.medmesh.group` state event's content, wherever it is set. */
export function checkListing(content: Record<string, unknown>): Decision {
  const parsed = GroupListingSchema.safeParse(content);
  if (parsed.success) return { allowed: true };
  const issue = parsed.error.issues[0];
  const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
  return {
    allowed: false,
    reason: `Invalid group listing (${GROUP_EVENT}): ${where}${issue?.message ?? "malformed"}`,
  };
}

/** Join rules under which someone outside the room can ask to join (knock). */
export const KNOCKABLE = new Set(["knock", "knock_restricted"]);
