import { z } from "zod";

const MatrixId = (sigil: string) =>
  z
    .string()
    .max(255)
    .refine((v) => v.startsWith(sigil), `must start with ${sigil}`);

/** What Synapse's module asks (policy-module/synapse-module), one schema per decision point. */
export const QUESTIONS = {
  invite: z.object({
    inviter: MatrixId("@"),
    invitee: MatrixId("@"),
    room_id: z.string(),
    /** local: user_may_invite; federation: an inbound /invite or an invite inside /send. */
    via: z.enum(["local", "federation"]),
  }),
  /** user_may_send_3pid_invite: an invitation by e-mail or phone number (the address is not sent). */
  invite_3pid: z.object({ inviter: MatrixId("@"), room_id: MatrixId("!") }),
  create_room: z.object({ user_id: MatrixId("@"), config: z.record(z.string(), z.unknown()) }),
  /**
   * user_may_join_room (a local user's join), and from check_event_for_spam a knock (any server's)
   * or another server's join.
   */
  join: z.object({
    user_id: MatrixId("@"),
    room_id: MatrixId("!"),
    is_invited: z.boolean(),
    membership: z.enum(["join", "knock"]).default("join"),
  }),
  publish: z.object({ user_id: MatrixId("@"), room_id: MatrixId("!") }),
  state_event: z.object({
    type: z.string(),
    state_key: z.string().optional(),
    sender: MatrixId("@"),
    room_id: MatrixId("!"),
    content: z.record(z.string(), z.unknown()),
    /** For m.room.join_rules and m.room.encryption: whether the room federates (its create event's m.federate) … */
    room_federates: z.boolean().optional(),
    /** … and whether it is end-to-end encrypted (has m.room.encryption state). */
    room_encrypted: z.boolean().optional(),
  }),
  /**
   * check_event_for_spam with room_servers (TI-M): a local user's message (not state, not a
   * redaction) into a room where these other servers have joined members.
   */
  message: z.object({
    sender: MatrixId("@"),
    room_id: MatrixId("!"),
    servers: z.array(z.string().min(1).max(255)).min(1).max(10_000),
  }),
  /** on_create_room: the createRoom request, for the profile to complete (TI-M's defaults). */
  room_defaults: z.object({ user_id: MatrixId("@"), config: z.record(z.string(), z.unknown()) }),
  /** The OIDC mapping provider, on every SSO login: the configured claims of the subject. */
  sso_claims: z.object({
    idp_id: z.string().min(1).max(255),
    subject: z.string().min(1).max(255),
    claims: z.record(z.string(), z.unknown()),
  }),
  /** on_user_login of type m.login.sso: Synapse completed an SSO login of this account. */
  sso_login: z.object({ user_id: MatrixId("@"), idp_id: z.string().min(1).max(255) }),
  /**
   * on_user_deactivation_status_changed: a report, not a question (the answer is always allowed).
   * Synapse calls it after every (re)activation, whatever the path: the user's own, the admin API.
   */
  account_status: z.object({ user_id: MatrixId("@"), deactivated: z.boolean(), by_admin: z.boolean() }),
} as const;

export type Check = keyof typeof QUESTIONS;
export type InviteQuestion = z.infer<(typeof QUESTIONS)["invite"]>;
export type ThreepidInviteQuestion = z.infer<(typeof QUESTIONS)["invite_3pid"]>;
export type CreateRoomQuestion = z.infer<(typeof QUESTIONS)["create_room"]>;
export type JoinQuestion = z.infer<(typeof QUESTIONS)["join"]>;
export type PublishQuestion = z.infer<(typeof QUESTIONS)["publish"]>;
export type MessageQuestion = z.infer<(typeof QUESTIONS)["message"]>;
export type StateQuestion = z.infer<(typeof QUESTIONS)["state_event"]>;
export type SsoClaimsQuestion = z.infer<(typeof QUESTIONS)["sso_claims"]>;
export type SsoLoginQuestion = z.infer<(typeof QUESTIONS)["sso_login"]>;
export type AccountStatusQuestion = z.infer<(typeof QUESTIONS)["account_status"]>;
