import { InvalidIdError, parseServerName } from "@medmesh/common";
import { z } from "zod";

/**
 * The TI-Messenger invite permissions of one user (gematik permissionConfig_Pro_V1), stored by
 * clients as global account data of this type. MedMesh enforces the format unchanged so that
 * settings made in any TI-M client mean the same here.
 */
export const PERMISSION_CONFIG_TYPE = "de.gematik.tim.account.permissionconfig.pro.v1";
/**
 * The same format for insured persons (TI-M ePA clients): their permission config is kept in this
 * type; the invite gate reads it for users of a tim-epa organisation, the Pro type as a fallback.
 */
export const EPA_PERMISSION_CONFIG_TYPE = "de.gematik.tim.account.permissionconfig.epa.v1";
export const PERMISSION_CONFIG_TYPES: readonly string[] = [
  PERMISSION_CONFIG_TYPE,
  EPA_PERMISSION_CONFIG_TYPE,
];

/** The only group TI-M defines so far. */
export const INSURED_PERSON_GROUP = "isInsuredPerson";

const DEFAULT_SETTINGS = ["allow all", "block all"] as const;

// Each exception maps to an object the spec reserves "for future enhancement"; keep its content.
const exceptionEntry = z.object({}, { error: "must be an object ({})" }).loose();

const userExceptionKey = z.string().refine((key) => key.startsWith("@"), {
  error: (iss) =>
    `has a key ${JSON.stringify(iss.input)} that is not a Matrix user ID (it must start with "@")`,
});

// The schema allows any key here, but its description says these are Matrix server names; a key
// that is not one could never match an inviter, so it is refused rather than silently ignored.
const serverExceptionKey = z.string().refine(
  (key) => {
    try {
      parseServerName(key);
      return true;
    } catch (err) {
      if (err instanceof InvalidIdError) return false;
      throw err;
    }
  },
  { error: (iss) => `has a key ${JSON.stringify(iss.input)} that is not a Matrix server name` },
);

export const PermissionConfigSchema = z
  .object(
    {
      defaultSetting: z.enum(DEFAULT_SETTINGS, {
        error: (iss) =>
          iss.input === undefined
            ? `is missing; it must be "allow all" or "block all"`
            : `must be "allow all" or "block all", not ${JSON.stringify(iss.input)}`,
      }),
      serverExceptions: z
        .record(serverExceptionKey, exceptionEntry, { error: "must be an object of server names" })
        .optional(),
      userExceptions: z
        .record(userExceptionKey, exceptionEntry, { error: "must be an object of Matrix user IDs" })
        .optional(),
      // The published schema's `items` lists `groupName` as if it were a keyword, so it constrains
      // nothing. We accept any group name: a group a future client knows and we don't is ignored
      // instead of making the whole config unreadable (which would refuse every invite).
      groupExceptions: z
        .array(
          z
            .object(
              { groupName: z.string({ error: 'must be a string such as "isInsuredPerson"' }) },
              { error: "must be an object with a groupName" },
            )
            .loose(),
          { error: "must be an array" },
        )
        .refine((groups) => new Set(groups.map((g) => g.groupName)).size === groups.length, {
          error: "must not name the same group twice",
        })
        .optional(),
    },
    { error: "must be a JSON object" },
  )
  // Unknown top-level keys are kept: later versions of the format may add some.
  .loose();
export type PermissionConfig = z.output<typeof PermissionConfigSchema>;

/** `userExceptions."@a:b"` style path, so the reason points at the exact entry at fault. */
function describePath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else if (typeof seg === "string" && /^[A-Za-z_][A-Za-z0-9_]*$/.test(seg)) out += out ? `.${seg}` : seg;
    else out += `[${JSON.stringify(String(seg))}]`;
  }
  return out || "The permission config";
}

/**
 * Validates account data content. The reason is meant for the user who saved the config (the proxy
 * returns it with M_BAD_JSON), so it names the field and the value at fault.
 */
export function parsePermissionConfig(
  content: unknown,
): { ok: true; config: PermissionConfig } | { ok: false; reason: string } {
  const parsed = PermissionConfigSchema.safeParse(content);
  if (parsed.success) return { ok: true, config: parsed.data };
  const issue = parsed.error.issues[0];
  if (!issue) return { ok: false, reason: "The permission config is invalid" };
  if (issue.code === "invalid_key") {
    // zod reports a bad record key at [record, key] with the key's own complaint nested inside;
    // that complaint already quotes the key, so name only the record.
    const inner = issue.issues[0]?.message ?? "has an invalid key";
    return { ok: false, reason: `${describePath(issue.path.slice(0, -1))} ${inner}` };
  }
  return { ok: false, reason: `${describePath(issue.path)} ${issue.message}` };
}

export interface InviteContext {
  /** Matrix user ID, "@local:server". */
  inviter: string;
  invitee: string;
  /**
   * Users of an organisation with the tim-epa profile (rooms/profile.ts); absent means no.
   */
  inviterIsInsuredPerson?: boolean;
}
export type InviteDecision = { allowed: true } | { allowed: false; reason: string };

/** "@a:localhost:8448" → "localhost:8448": everything after the first ":" (a port is part of it). */
function serverOf(userId: string): string | undefined {
  const i = userId.indexOf(":");
  return i > 0 && i < userId.length - 1 ? userId.slice(i + 1) : undefined;
}

// DNS names are case-insensitive, so "SPAM.example" reaches the same host as "spam.example";
// comparing server names exactly would let a blocked server evade the list by changing case.
// Localparts stay case-sensitive: Matrix compares them exactly.
const sameServer = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();

function sameUser(a: string, b: string): boolean {
  const sa = serverOf(a);
  const sb = serverOf(b);
  if (sa === undefined || sb === undefined) return a === b;
  return a.slice(0, a.length - sa.length) === b.slice(0, b.length - sb.length) && sameServer(sa, sb);
}

const namedByUser = (config: PermissionConfig, inviter: string): boolean =>
  Object.keys(config.userExceptions ?? {}).some((id) => sameUser(id, inviter));

function namedByServer(config: PermissionConfig, inviter: string): boolean {
  const server = serverOf(inviter);
  return (
    server !== undefined && Object.keys(config.serverExceptions ?? {}).some((s) => sameServer(s, server))
  );
}

const namedByGroup = (config: PermissionConfig, ctx: InviteContext): boolean =>
  ctx.inviterIsInsuredPerson === true &&
  (config.groupExceptions ?? []).some((g) => g.groupName === INSURED_PERSON_GROUP);

/**
 * TI-M semantics: exceptions invert the default. Under "allow all" an inviter named by a user,
 * server or group exception is blocked; under "block all" only such an inviter is allowed. Without
 * a config everyone may invite here; the organisation default (evaluateOrgDefault) comes after.
 */
export function evaluateInvite(config: PermissionConfig | undefined, ctx: InviteContext): InviteDecision {
  if (!config) return { allowed: true };
  const named =
    namedByUser(config, ctx.inviter) || namedByServer(config, ctx.inviter) || namedByGroup(config, ctx);
  const allowed = (config.defaultSetting === "allow all") !== named;
  // The same sentence for every refusal: the inviter learns they may not invite, not which list
  // of the invitee's names them.
  return allowed
    ? { allowed: true }
    : { allowed: false, reason: `${ctx.invitee} does not accept invites from ${ctx.inviter}` };
}

/**
 * True only when the config positively names the inviter (by user ID or server) under "block all".
 * Not being blocked under "allow all" is no statement about this inviter, and the insured-person
 * group is deliberately left out: it names a kind of user, not this one.
 */
export function explicitlyAllows(config: PermissionConfig, inviter: string): boolean {
  return (
    config.defaultSetting === "block all" && (namedByUser(config, inviter) || namedByServer(config, inviter))
  );
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

export interface OrgDefaultContext {
  /** Named in the refusal reason. */
  inviter: string;
  invitee: string;
  inviterVerified: boolean;
  inviteeVerified: boolean;
  /** Usually `config !== undefined && explicitlyAllows(config, inviter)` for the invitee's config. */
  inviteeHasAllowedInviter: boolean;
}

/**
 * Verified clinicians are shielded from unsolicited invites by unverified users unless the
 * organisation opts out or the clinician has named the inviter themselves.
 */
export function evaluateOrgDefault(policy: OrgInvitePolicy, ctx: OrgDefaultContext): InviteDecision {
  if (!ctx.inviteeVerified || ctx.inviterVerified) return { allowed: true };
  if (policy.unverified_may_invite_verified || ctx.inviteeHasAllowedInviter) return { allowed: true };
  return {
    allowed: false,
    reason:
      `${ctx.invitee} is a verified clinician and accepts invites from ${ctx.inviter}, who is not ` +
      `verified, only after adding them to their invite settings`,
  };
}
