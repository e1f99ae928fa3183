import { z } from "zod";

/** The TI-Messenger account data type holding a user's invite permissions (gematik permissionConfig_Pro_V1). */
export const PERMISSION_CONFIG_TYPE = "de.gematik.tim.account.permissionconfig.pro.v1";

export const PermissionConfigSchema = z
  .object({
    defaultSetting: z.enum(["allow all", "block all"]),
    serverExceptions: z.record(z.string().min(1), z.object({}).loose()).optional(),
    userExceptions: z
      .record(z.string().regex(/^@.*$/, "user exceptions must be Matrix user IDs"), z.object({}).loose())
      .optional(),
    groupExceptions: z.array(z.object({ groupName: z.enum(["isInsuredPerson"]) }).loose()).optional(),
  })
  .loose();
export type PermissionConfig = z.output<typeof PermissionConfigSchema>;

export function parsePermissionConfig(
  content: unknown,
): { ok: true; config: PermissionConfig } | { ok: false; reason: string } {
  const parsed = PermissionConfigSchema.safeParse(content);
  if (parsed.success) return { ok: true, config: parsed.data };
  const issue = parsed.error.issues[0];
  // A bad record key (zod "invalid_key") carries the key's own complaint inside.
  const inner = issue?.code === "invalid_key" ? issue.issues[0]?.message : undefined;
  return {
    ok: false,
    reason: `${issue?.path.join(".") || "(root)"}: ${inner ?? issue?.message ?? "invalid"}`,
  };
}

export interface InviteContext {
  inviter: string;
  invitee: string;
  inviterIsInsuredPerson?: boolean;
}
export type InviteDecision = { allowed: true } | { allowed: false; reason: string };

const serverOf = (userId: string): string => userId.slice(userId.indexOf(":") + 1);

/** Whether the inviter is named by an exception (user, server or group); exceptions invert the default. */
function isException(config: PermissionConfig, ctx: InviteContext): boolean {
  return (
    Object.hasOwn(config.userExceptions ?? {}, ctx.inviter) ||
    Object.hasOwn(config.serverExceptions ?? {}, serverOf(ctx.inviter)) ||
    (ctx.inviterIsInsuredPerson === true && (config.groupExceptions ?? []).length > 0) // "isInsuredPerson" is the only group TI-M defines
  );
}

/** TI-M semantics: "allow all" blocks the exceptions; "block all" allows only the exceptions. */
export function evaluateInvite(config: PermissionConfig | undefined, ctx: InviteContext): InviteDecision {
  if (!config) return { allowed: true };
  const allowed = (config.defaultSetting === "allow all") !== isException(config, ctx);
  return allowed
    ? { allowed: true }
    : { allowed: false, reason: `${ctx.invitee} does not accept invites from ${ctx.inviter}` };
}

/** True when the invitee has named the inviter (or its server) as allowed in a "block all" config. */
export function explicitlyAllows(config: PermissionConfig, inviter: string): boolean {
  return config.defaultSetting === "block all" && isException(config, { inviter, invitee: "" });
}

export const OrgInvitePolicySchema = z
  .object({
    unverified_may_invite_verified: z
      .boolean()
      .default(false)
      .describe(
        "Whether a user who is not a verified clinician may invite a verified clinician who has not " +
          "explicitly allowed them in their permission settings.",
      ),
  })
  .describe("The organisation's default invite rule, applied after each user's own permission config.");
export type OrgInvitePolicy = z.output<typeof OrgInvitePolicySchema>;

export function evaluateOrgDefault(
  policy: OrgInvitePolicy,
  ctx: {
    inviter: string;
    invitee: string;
    inviterVerified: boolean;
    inviteeVerified: boolean;
    inviteeHasAllowedInviter: boolean;
  },
): InviteDecision {
  if (!ctx.inviteeVerified || ctx.inviterVerified) return { allowed: true };
  if (policy.unverified_may_invite_verified || ctx.inviteeHasAllowedInviter) return { allowed: true };
  return {
    allowed: false,
    reason: `${ctx.invitee} is a verified clinician and accepts invites from unverified users like ${ctx.inviter} only when they have added them`,
  };
}
