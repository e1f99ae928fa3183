import { Refusal, route, type Route } from "../proxy/index.ts";
import {
  API,
  audited,
  consoleRoute,
  json,
  localUser,
  requireSession,
  checkCsrf,
  sessionCookie,
  type ApiDeps,
} from "./http.ts";
import { isRole, permissionsOf } from "./roles.ts";

/**
 * Sign-in: the page logs in to Synapse with the admin's own password (through the proxy, like any
 * client), then trades that Matrix access token here for a console session. The token is checked
 * by Synapse (whoami); the role by MedMesh. The page logs the Matrix token out again afterwards.
 */
export function sessionRoutes(d: ApiDeps, maxAgeS: number): Route[] {
  const describe = (userId: string, role: string, csrf: string, expiresAt: Date) => ({
    user_id: userId,
    role,
    permissions: isRole(role) ? permissionsOf(role) : [],
    csrf_token: csrf,
    expires_at: expiresAt.toISOString(),
    server_name: d.serverName,
  });
  return [
    route("POST", `^${API}/session`, async (ctx) => {
      const requester = await ctx.requireRequester();
      const userId = requester.userId;
      if (!userId.endsWith(`:${d.serverName}`)) {
        throw new Refusal(403, "M_FORBIDDEN", `${userId} is not a user of ${d.serverName}`);
      }
      const role = await d.roles.roleOf(userId);
      if (!role) {
        await d.audit.record({
          actor: userId,
          action: "console.sign_in",
          object: userId,
          outcome: "refused",
        });
        throw new Refusal(
          403,
          "M_FORBIDDEN",
          `${userId} has no role in this organisation's console; an org admin can grant one`,
        );
      }
      const { id, session } = await d.sessions.create(userId);
      await d.audit.record({
        actor: userId,
        action: "console.sign_in",
        object: userId,
        outcome: "ok",
        details: { role },
      });
      return json(describe(userId, role, session.csrfToken, session.expiresAt), 200, {
        "set-cookie": sessionCookie(ctx, id, maxAgeS),
      });
    }),
    route("GET", `^${API}/session`, async (ctx) => {
      const actor = await requireSession(ctx, d);
      return json(describe(actor.userId, actor.role, actor.session.csrfToken, actor.session.expiresAt));
    }),
    route("DELETE", `^${API}/session`, async (ctx) => {
      const actor = await requireSession(ctx, d);
      checkCsrf(ctx, actor);
      await d.sessions.end(actor.sessionId);
      await audited(d, actor, "sign_out", actor.userId, "ok");
      return json({}, 200, { "set-cookie": sessionCookie(ctx, "", 0) });
    }),
    consoleRoute(d, "GET", "/roles", "roles.manage", async () => json({ grants: await d.roles.list() })),
    consoleRoute(d, "PUT", "/roles/{}", "roles.manage", async (ctx, actor, [raw = ""]) => {
      const userId = localUser(raw, d.serverName);
      const body = await ctx.json(4096);
      if (!isRole(body.role))
        throw new Refusal(400, "M_INVALID_PARAM", 'role must be "org_admin", "reviewer" or "auditor"');
      await d.roles.grant(userId, body.role, actor.userId);
      await audited(d, actor, "role_granted", userId, "ok", { granted: body.role });
      return json({ user_id: userId, role: body.role });
    }),
    consoleRoute(d, "DELETE", "/roles/{}", "roles.manage", async (_ctx, actor, [raw = ""]) => {
      const userId = localUser(raw, d.serverName);
      if (!(await d.roles.revoke(userId)))
        throw new Refusal(404, "M_NOT_FOUND", `${userId} has no role granted in the console`);
      const ended = await d.sessions.endAll(userId);
      await audited(d, actor, "role_revoked", userId, "ok", { sessions_ended: ended });
      return json({ user_id: userId, revoked: true });
    }),
  ];
}
