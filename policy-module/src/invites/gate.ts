import { MatrixRequestError, type SynapseAdmin } from "@medmesh/common";
import type { Logger } from "pino";
import type { Decision, InviteGate } from "../proxy/index.ts";
import type { Verification } from "../identity/verification.ts";
import {
  evaluateInvite,
  evaluateOrgDefault,
  explicitlyAllows,
  EPA_PERMISSION_CONFIG_TYPE,
  parsePermissionConfig,
  PERMISSION_CONFIG_TYPE,
  type OrgInvitePolicy,
  type PermissionConfig,
} from "./permission-config.ts";

const CACHE_MS = 30_000;

/**
 * Invite permissions of this organisation's users: their TI-Messenger permission config (read
 * from Synapse account data through the admin API, cached briefly and dropped when the proxy
 * sees the user change it), then the organisation default. Unreadable settings refuse the invite.
 * An insured person's config is the ePA type (the Pro type when they have no ePA one).
 */
export function createInviteGate(deps: {
  admin: SynapseAdmin;
  policy: OrgInvitePolicy;
  verification: Verification;
  log: Logger;
  /** TI-M's isInsuredPerson group (rooms/profile.ts): whether an inviter (or invitee) is one. */
  isInsuredPerson?: (userId: string) => boolean;
  /**
   * Inviters that invite only on an organisation's own decision and so count as verified
   * inviters (never as verified invitees: anyone may still invite them).
   */
  vouchedInviter?: (userId: string) => boolean;
}): InviteGate {
  const cache = new Map<string, { config: PermissionConfig | undefined; expires: number }>();

  const configOf = async (userId: string): Promise<PermissionConfig | undefined | "missing-user"> => {
    const hit = cache.get(userId);
    if (hit && hit.expires > Date.now()) return hit.config;
    let data: { account_data?: { global?: Record<string, unknown> } };
    try {
      data = await deps.admin.request(
        "GET",
        `/_synapse/admin/v1/users/${encodeURIComponent(userId)}/accountdata`,
      );
    } catch (err) {
      if (err instanceof MatrixRequestError && err.status === 404) return "missing-user";
      throw err;
    }
    const global = data.account_data?.global ?? {};
    const raw =
      (deps.isInsuredPerson?.(userId) ? global[EPA_PERMISSION_CONFIG_TYPE] : undefined) ??
      global[PERMISSION_CONFIG_TYPE];
    let config: PermissionConfig | undefined;
    if (raw !== undefined) {
      const parsed = parsePermissionConfig(raw);
      if (!parsed.ok) throw new UnreadableConfig(userId, parsed.reason);
      config = parsed.config;
    }
    cache.set(userId, { config, expires: Date.now() + CACHE_MS });
    return config;
  };

  return {
    async check(inviter, invitee): Promise<Decision> {
      let config: PermissionConfig | undefined | "missing-user";
      try {
        config = await configOf(invitee);
      } catch (err) {
        if (!(err instanceof UnreadableConfig)) throw err;
        deps.log.warn({ invitee, reason: err.reason }, "unreadable permission config; invite refused");
        return {
          allowed: false,
          reason: `${invitee}'s invite settings cannot be read, so invites are refused`,
        };
      }
      if (config === "missing-user") return { allowed: true }; // Synapse answers for unknown users
      const own = evaluateInvite(config, {
        inviter,
        invitee,
        inviterIsInsuredPerson: deps.isInsuredPerson?.(inviter) ?? false,
      });
      if (!own.allowed) return own;
      const [inviterVerified, inviteeVerified] = await Promise.all([
        deps.vouchedInviter?.(inviter) ? true : deps.verification.isVerified(inviter),
        deps.verification.isVerified(invitee),
      ]);
      return evaluateOrgDefault(deps.policy, {
        inviter,
        invitee,
        inviterVerified,
        inviteeVerified,
        inviteeHasAllowedInviter: config !== undefined && explicitlyAllows(config, inviter),
      });
    },
    changed(userId) {
      cache.delete(userId);
    },
  };
}

class UnreadableConfig extends Error {
  readonly reason: string;
  constructor(userId: string, reason: string) {
    super(`permission config of ${userId}: ${reason}`);
    this.reason = reason;
  }
}
