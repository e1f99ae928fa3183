import type { Verification } from "../identity/verification.ts";
import { serverOf, type Decision, type InviteGate, type TrustView } from "../proxy/policy.ts";
import { checkListing, GROUP_EVENT, type MembershipQuestion } from "../groups/index.ts";
import { checkRoomState, presetJoinRule, type RoomRulesPolicy, type StateContent } from "../rooms/rules.ts";
import { insuredPerson, isTim, type Profile } from "../rooms/profile.ts";
import { checkTimCreateRoom, checkTimEncryption, checkTimJoinRule, timRoomDefaults } from "../rooms/tim.ts";
import type {
  AccountStatusQuestion,
  CreateRoomQuestion,
  InviteQuestion,
  JoinQuestion,
  MessageQuestion,
  PublishQuestion,
  SsoClaimsQuestion,
  SsoLoginQuestion,
  StateQuestion,
  ThreepidInviteQuestion,
} from "./questions.ts";

export interface DeciderDeps {
  serverName: string;
  trust: TrustView;
  invites: InviteGate;
  verification: Verification;
  rooms: RoomRulesPolicy;
  /** The organisation's rule profile (docs/tim-profile.md); MedMesh's own when not given. */
  profile?: Profile;
  /** Whether a user is an insured person (TI-M ePA); by default only this organisation's are known. */
  insured?: (userId: string) => boolean;
  /** Who may knock on and join the group directory's rooms (groups/). */
  groups: { membership(q: MembershipQuestion): Promise<Decision> };
  /** Single sign-on with the organisation's identity provider (identity/sso.ts), when configured. */
  sso?: {
    claims(q: SsoClaimsQuestion): Promise<Decision>;
    login(q: SsoLoginQuestion): Promise<Decision>;
  };
  /** This organisation's accounts: a deactivated one loses its verification (identity/). */
  accounts: { deactivated(userId: string, byAdmin: boolean): Promise<unknown> };
}

/** Synapse's decision points, answered from the capabilities that own each rule. */
export interface Decider {
  invite(q: InviteQuestion): Promise<Decision>;
  threepidInvite(q: ThreepidInviteQuestion): Decision;
  createRoom(q: CreateRoomQuestion): Promise<Decision>;
  /** The createRoom request as the profile completes it (on_create_room); undefined: unchanged. */
  roomDefaults(q: CreateRoomQuestion): Record<string, unknown> | undefined;
  join(q: JoinQuestion): Promise<Decision>;
  publish(q: PublishQuestion): Promise<Decision>;
  stateEvent(q: StateContent & Partial<StateQuestion>): Decision;
  /** A local user's message into a room with members on these other servers. */
  message(q: MessageQuestion): Decision;
  ssoClaims(q: SsoClaimsQuestion): Promise<Decision>;
  ssoLogin(q: SsoLoginQuestion): Promise<Decision>;
  /** Synapse's report of a (de)activation; acted on, always answered allowed. */
  accountStatus(q: AccountStatusQuestion): Promise<Decision>;
}

const ALLOWED: Decision = { allowed: true };
// Invite permissions name Matrix users and servers; an address outside Matrix would bypass them.
const NO_3PID: Decision = {
  allowed: false,
  reason: "Invitations by e-mail or phone number are not available on this server",
};

const NO_SSO: Decision = {
  allowed: false,
  reason: "Single sign-on is not configured for this organisation's MedMesh",
};

export function createDecider(d: DeciderDeps): Decider {
  const profile = d.profile ?? "medmesh";
  const tim = isTim(profile);
  const insured =
    d.insured ?? ((userId: string): boolean => insuredPerson(userId, { serverName: d.serverName, profile }));
  const untrustedServer = (server: string | undefined): string | undefined =>
    server !== undefined && server !== d.serverName && !d.trust.isTrusted(server) ? server : undefined;
  const untrusted = (id: string): string | undefined => untrustedServer(serverOf(id));

  const invite = async (q: InviteQuestion): Promise<Decision> => {
    for (const id of [q.inviter, q.invitee]) {
      const server = untrusted(id);
      if (server !== undefined) {
        return {
          allowed: false,
          reason: `Cannot invite ${q.invitee}: ${server} is not an organisation on this network's trust list`,
        };
      }
    }
    // TI-M: insured persons do not invite each other, whatever the invitee's permission config says.
    if (insured(q.inviter) && insured(q.invitee)) {
      return {
        allowed: false,
        reason: `Cannot invite ${q.invitee}: insured persons cannot invite each other`,
      };
    }
    if (q.room_id) {
      const group = await d.groups.membership({
        user_id: q.invitee,
        room_id: q.room_id,
        membership: "invite",
      });
      if (!group.allowed) return group;
    }
    // A remote invitee's own organisation decides on its inbound invite.
    if (serverOf(q.invitee) !== d.serverName) return ALLOWED;
    return d.invites.check(q.inviter, q.invitee);
  };

  const stateEvent: Decider["stateEvent"] = (e) => {
    if (e.type === GROUP_EVENT) return checkListing(e.content);
    if (tim && e.type === "m.room.encryption") {
      const decision = checkTimEncryption({ federates: e.room_federates, encrypted: e.room_encrypted });
      if (!decision.allowed) return decision;
    }
    if (tim && e.type === "m.room.join_rules") {
      return checkTimJoinRule(e.content.join_rule, profile, {
        federates: e.room_federates,
        encrypted: e.room_encrypted,
      });
    }
    return checkRoomState(e, d.rooms);
  };

  const publish = async (userId: string): Promise<Decision> =>
    profile === "tim-epa"
      ? { allowed: false, reason: "Insured persons cannot list rooms in the room directory" }
      : (await d.verification.isVerified(userId))
        ? ALLOWED
        : {
            allowed: false,
            reason: "Only verified clinicians may list rooms in this organisation's room directory",
          };

  return {
    invite,
    threepidInvite: () => NO_3PID,
    async createRoom({ user_id, config }) {
      if (Array.isArray(config.invite_3pid) && config.invite_3pid.length > 0) return NO_3PID;
      const initial = Array.isArray(config.initial_state) ? config.initial_state : [];
      const state = initial.filter(isStateContent);
      // Synapse applies initial_state over the preset, so the preset's join rule counts only
      // when initial_state does not set one.
      const joinRule = presetJoinRule(config);
      if (joinRule !== undefined && !state.some((e) => e.type === "m.room.join_rules")) {
        state.push({ type: "m.room.join_rules", content: { join_rule: joinRule } });
      }
      for (const event of state) {
        // TI-M decides the starting join rule with the room's encryption and federation below.
        if (tim && event.type === "m.room.join_rules") continue;
        const decision = stateEvent(event);
        if (!decision.allowed) return decision;
      }
      if (tim) {
        const decision = checkTimCreateRoom(config, profile);
        if (!decision.allowed) return decision;
      }
      if (config.visibility === "public") {
        const decision = await publish(user_id);
        if (!decision.allowed) return decision;
      }
      const invitees = Array.isArray(config.invite) ? config.invite : [];
      for (const invitee of invitees) {
        if (typeof invitee !== "string") continue; // Synapse refuses a malformed list itself
        const decision = await invite({ inviter: user_id, invitee, room_id: "", via: "local" });
        if (!decision.allowed) return decision;
      }
      return ALLOWED;
    },
    async join({ user_id, room_id, membership }) {
      // Room IDs before room version 12 name their creating server; later ones do not, and Synapse's
      // federation whitelist (the trust list) then refuses the remote join itself.
      const server = untrusted(room_id);
      if (server !== undefined) {
        return {
          allowed: false,
          reason: `Cannot join ${room_id}: ${server} is not on this network's trust list`,
        };
      }
      return d.groups.membership({ user_id, room_id, membership });
    },
    message({ room_id, servers }) {
      // Nothing is sent to a server off the trust list (Synapse's federation whitelist); the sender
      // is told so instead of the message silently never reaching that server's members.
      const server = servers.find((s) => untrustedServer(s) !== undefined);
      return server === undefined
        ? ALLOWED
        : {
            allowed: false,
            reason:
              `Cannot send to ${room_id}: ${server}, a member's server, is not an organisation on ` +
              `this network's trust list, so the message would not reach it`,
          };
    },
    roomDefaults: ({ config }) => (tim ? timRoomDefaults(config) : undefined),
    publish: ({ user_id }) => publish(user_id),
    stateEvent,
    ssoClaims: (q) => (d.sso ? d.sso.claims(q) : Promise.resolve(NO_SSO)),
    ssoLogin: (q) => (d.sso ? d.sso.login(q) : Promise.resolve(NO_SSO)),
    async accountStatus({ user_id, deactivated, by_admin }) {
      // A reactivated account stays unverified until its holder verifies again; another server's
      // accounts are that organisation's to revoke.
      if (deactivated && serverOf(user_id) === d.serverName) await d.accounts.deactivated(user_id, by_admin);
      return ALLOWED;
    },
  };
}

function isStateContent(
  e: unknown,
): e is { type: string; state_key?: string; content: Record<string, unknown> } {
  if (typeof e !== "object" || e === null) return false;
  const { type, content } = e as { type?: unknown; content?: unknown };
  return typeof type === "string" && typeof content === "object" && content !== null;
}
