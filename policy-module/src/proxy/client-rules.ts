import { stripImageFile, walkerFor } from "../media/index.ts";
import { PERMISSION_CONFIG_TYPES, parsePermissionConfig } from "../invites/index.ts";
import { forbidden, Refusal, type ProxyContext } from "./context.ts";
import type { ProxyConfig } from "./config.ts";
import { isTim, type Profile } from "../rooms/profile.ts";
import {
  isUserId,
  serverOf,
  type Decision,
  type DirectoryGate,
  type InviteGate,
  type TrustView,
} from "./policy.ts";
import { CLIENT, MEDIA, route, type Route } from "./router.ts";

export interface ClientRuleDeps {
  config: ProxyConfig;
  /** TI-M refuses a private room without encryption (the decider) instead of adding it here. */
  profile?: Profile;
  serverName: string;
  trust: TrustView;
  invites: InviteGate;
  directory: DirectoryGate;
  onStripped: (removed: string[]) => void;
  /** The organisation's MedMesh bot, made admin of every room created through the proxy. */
  botUserId?: string;
  /**
   * Whether a user may knock on a room (the group directory's rules). Synapse has no decision
   * point for a knock its own user makes, so the clear refusal is here; see docs/groups.md.
   */
  knock?: (q: { user_id: string; room_id: string; membership: "knock" }) => Promise<Decision>;
}

const MEGOLM = "m.megolm.v1.aes-sha2";

/**
 * The client-API rules: which requests the proxy refuses, rewrites or answers itself. Endpoints
 * refused outright (admin API, link previews, unauthenticated media, org.medmesh.* profile
 * fields) are `deny` entries of the endpoint table (endpoint-table.ts) instead.
 */
export function clientRules(d: ClientRuleDeps): Route[] {
  const limit = d.config.limits.json_body_bytes;

  const assertTrusted = (server: string | undefined, what: string): void => {
    if (server === undefined || server === d.serverName) return;
    if (!d.trust.isTrusted(server)) {
      throw forbidden(`${what}: ${server} is not an organisation on this network's trust list`);
    }
  };

  const checkInvite = (invitee: unknown): void => {
    if (!isUserId(invitee)) throw new Refusal(400, "M_INVALID_PARAM", "user_id must be a Matrix user ID");
    assertTrusted(serverOf(invitee), `Cannot invite ${invitee}`);
    // Invite permissions are decided at Synapse's own decision point (policy-module/synapse-module),
    // which every path passes: this endpoint, the state API, createRoom, appservices.
  };

  const checkJoin = (ctx: ProxyContext, target: string): void => {
    const what = `Cannot join ${target}`;
    if (target.startsWith("#") || target.startsWith("!")) assertTrusted(serverOf(target), what);
    for (const key of ["server_name", "via"]) {
      for (const server of ctx.url.searchParams.getAll(key)) assertTrusted(server, what);
    }
  };

  return [
    route("POST", `${CLIENT}/createRoom`, async (ctx) => {
      const requester = await ctx.requireRequester();
      const body = await ctx.json(limit);
      if (body.invite_3pid !== undefined) {
        throw forbidden("Invitations by e-mail or phone number are not available on this server");
      }
      const invites = body.invite === undefined ? [] : body.invite;
      if (!Array.isArray(invites)) throw new Refusal(400, "M_INVALID_PARAM", "invite must be a list");
      for (const invitee of invites) checkInvite(invitee);
      const encrypted =
        d.profile !== undefined && isTim(d.profile)
          ? body
          : withEncryption(body, d.config.rooms.allow_unencrypted_announcements);
      ctx.replaceJson(d.botUserId ? withBot(encrypted, d.botUserId, requester.userId) : encrypted);
      return undefined;
    }),
    route("POST", `${CLIENT}/rooms/{}/invite`, async (ctx) => {
      await ctx.requireRequester();
      checkInvite((await ctx.json(limit)).user_id);
      return undefined;
    }),
    route("POST", `${CLIENT}/join/{}`, (ctx, [target = ""]) => {
      checkJoin(ctx, target);
      return Promise.resolve(undefined);
    }),
    route("POST", `${CLIENT}/knock/{}`, async (ctx, [target = ""]) => {
      checkJoin(ctx, target);
      // An alias is resolved by Synapse; the room's organisation decides on the knock then.
      if (!d.knock || !target.startsWith("!")) return undefined;
      const requester = await ctx.requireRequester();
      const decision = await d.knock({ user_id: requester.userId, room_id: target, membership: "knock" });
      if (!decision.allowed) throw forbidden(decision.reason);
      return undefined;
    }),
    route("POST", `${CLIENT}/rooms/{}/join`, (ctx, [target = ""]) => {
      checkJoin(ctx, target);
      return Promise.resolve(undefined);
    }),
    route("PUT", `${CLIENT}/user/{}/account_data/{}`, async (ctx, [userId = "", type]) => {
      // Both TI-M types (Pro, ePA): the invite gate reads either, so either must be well-formed.
      if (type === undefined || !PERMISSION_CONFIG_TYPES.includes(type)) return undefined;
      const parsed = parsePermissionConfig(await ctx.json(limit));
      if (!parsed.ok) throw new Refusal(400, "M_BAD_JSON", `Invalid permission config: ${parsed.reason}`);
      d.invites.changed(userId);
      return undefined;
    }),
    route("POST", `${CLIENT}/user_directory/search`, async (ctx) => {
      const requester = await ctx.requireRequester();
      return d.directory.search(requester, await ctx.json(limit));
    }),
    route("GET", `${CLIENT}/profile/{}(?:/(displayname|avatar_url))?`, async (ctx, [userId = "", field]) => {
      const requester = await ctx.requireRequester();
      return d.directory.profile(requester, userId, field);
    }),
    route(["POST", "PUT"], `${MEDIA}/upload(?:/{}/{})?`, async (ctx) => {
      const type = ctx.req.headers["content-type"] ?? "";
      // Encrypted files are application/octet-stream; HEIC, GIF and the like pass as they are.
      if (walkerFor(type) === undefined) return undefined;
      // Spooled, walked and streamed on from a temporary file: never held whole in memory.
      const spooled = await ctx.spool(d.config.limits.media_body_bytes);
      const result = await stripImageFile(spooled.path, spooled.size, type);
      if (result.kind === "invalid") {
        throw new Refusal(400, "M_INVALID_PARAM", `The upload is not a valid ${type} file: ${result.reason}`);
      }
      if (result.kind === "unsupported") throw new Error(`no metadata walker for ${type}`);
      ctx.replacedBody = result;
      d.onStripped(result.removed);
      return undefined;
    }),
  ];
}

/**
 * Rooms are end-to-end encrypted from their first event: the encryption state is part of the
 * initial state, so no message can be sent before it. The only exception is a read-only
 * announcement room, and only where the organisation allows those.
 */
export function withEncryption(
  body: Record<string, unknown>,
  allowAnnouncements: boolean,
): Record<string, unknown> {
  const initial: unknown = body.initial_state ?? [];
  if (!Array.isArray(initial)) throw new Refusal(400, "M_INVALID_PARAM", "initial_state must be a list");
  const hasEncryption = initial.some(
    (e: unknown) =>
      typeof e === "object" && e !== null && (e as { type?: unknown }).type === "m.room.encryption",
  );
  if (hasEncryption) return body;
  const creation = body.creation_content as Record<string, unknown> | undefined;
  if (creation?.["org.medmesh.announcement"] === true) {
    if (!allowAnnouncements) {
      throw forbidden("Unencrypted announcement rooms are not allowed by this organisation");
    }
    const levels = body.power_level_content_override as { events_default?: unknown } | undefined;
    if (typeof levels?.events_default !== "number" || levels.events_default < 50) {
      throw forbidden("An unencrypted announcement room must be read-only (events_default of 50 or more)");
    }
    return body;
  }
  return {
    ...body,
    initial_state: [
      ...(initial as unknown[]),
      { type: "m.room.encryption", state_key: "", content: { algorithm: MEGOLM } },
    ],
  };
}

/**
 * The MedMesh bot joins every room created through the proxy as an admin (power level 100): it
 * keeps the members' verification badges current and (retention) redacts expired messages. It has
 * no devices, so it never receives the keys of encrypted messages.
 */
export function withBot(
  body: Record<string, unknown>,
  bot: string,
  creator: string,
): Record<string, unknown> {
  const invite = Array.isArray(body.invite) ? (body.invite as unknown[]) : [];
  const levels = (body.power_level_content_override ?? {}) as Record<string, unknown>;
  // An override's users replace the default map. Before room version 12 that map must keep the
  // creator at 100; from 12 on (MSC4289) creators hold power by being creators and are not listed.
  const version = typeof body.room_version === "string" ? Number(body.room_version) : 12;
  const users = (levels.users ?? (version >= 12 ? {} : { [creator]: 100 })) as Record<string, unknown>;
  return {
    ...body,
    invite: invite.includes(bot) ? invite : [...invite, bot],
    power_level_content_override: { ...levels, users: { ...users, [bot]: 100 } },
  };
}
