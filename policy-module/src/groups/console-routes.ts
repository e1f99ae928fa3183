import { MatrixRequestError } from "@medmesh/common";
import { audited, consoleRoute, json, type ApiDeps } from "../console/index.ts";
import { Refusal, type Route } from "../proxy/index.ts";
import type { GroupEntry } from "./groups-store.ts";
import { reasonOf, type Moderation } from "./moderation.ts";

const view = (g: GroupEntry) => ({
  room_id: g.room_id,
  name: g.name,
  topic: g.topic,
  description: g.description,
  scope: g.scope,
  professions: g.professions,
  join_rule: g.join_rule,
  members: g.members,
});

/** Synapse's refusal (the invite decision's reason, the bot's missing power) as the console's own. */
const fromSynapse = (err: unknown): never => {
  if (err instanceof MatrixRequestError)
    throw new Refusal(err.status >= 500 ? 502 : err.status, err.errcode, reasonOf(err));
  throw err;
};

/**
 * The console's groups page API (docs/groups.md): the organisation's listed groups and their
 * pending knocks for every console role; approve, refuse and unlist for org admins, done by the
 * room-admin bot and audited with the console user as actor.
 */
export function groupConsoleRoutes(d: ApiDeps, moderation: Moderation): Route[] {
  return [
    consoleRoute(d, "GET", "/groups", "groups.read", async () =>
      json({
        groups: (await moderation.list().catch(fromSynapse)).map((g) => ({
          ...view(g),
          in_directory: g.in_directory,
        })),
      }),
    ),
    consoleRoute(d, "GET", "/groups/{}/knocks", "groups.read", async (_ctx, _actor, [roomId = ""]) => {
      const { group, knocks } = await moderation.knocks(roomId).catch(fromSynapse);
      return json({ room_id: group.room_id, knocks });
    }),
    consoleRoute(
      d,
      "POST",
      "/groups/{}/knocks/{}/approve",
      "groups.manage",
      async (_ctx, actor, [roomId = "", userId = ""]) => {
        let g: GroupEntry;
        try {
          g = await moderation.approve(roomId, userId);
        } catch (err) {
          // The invite decision (the group's professions, the invitee's organisation) said no.
          if (err instanceof MatrixRequestError && err.status === 403)
            await audited(d, actor, "group_knock_approve_refused", userId, "refused", {
              room_id: roomId,
              reason: reasonOf(err),
            });
          return fromSynapse(err);
        }
        await audited(d, actor, "group_knock_approved", userId, "invited", {
          room_id: roomId,
          group: g.name,
        });
        return json({ room_id: roomId, user_id: userId, invited: true });
      },
    ),
    consoleRoute(
      d,
      "POST",
      "/groups/{}/knocks/{}/refuse",
      "groups.manage",
      async (ctx, actor, [roomId = "", userId = ""]) => {
        const body = await ctx.json(16 * 1024);
        const reason = typeof body.reason === "string" ? body.reason.trim() : "";
        if (!reason || reason.length > 500)
          throw new Refusal(
            400,
            "M_INVALID_PARAM",
            "reason: say why the request is refused (1 to 500 characters); the knocker sees it",
          );
        const g = await moderation.refuse(roomId, userId, reason).catch(fromSynapse);
        await audited(d, actor, "group_knock_refused", userId, "ok", {
          room_id: roomId,
          group: g.name,
          reason,
        });
        return json({ room_id: roomId, user_id: userId, refused: true });
      },
    ),
    consoleRoute(d, "POST", "/groups/{}/unlist", "groups.manage", async (ctx, actor, [roomId = ""]) => {
      const body = await ctx.json(16 * 1024);
      if (body.confirm !== roomId)
        throw new Refusal(400, "M_INVALID_PARAM", `Confirm by sending confirm: "${roomId}"`);
      const g = await moderation.unlist(roomId).catch(fromSynapse);
      await audited(d, actor, "group_unlisted", roomId, "ok", { group: g.name });
      return json({ room_id: roomId, listed: false });
    }),
  ];
}
