import type { SynapseAdmin } from "@medmesh/common";
import type { Knex } from "knex";
import { Refusal, type Route } from "../proxy/index.ts";
import type { AuditQuery } from "./audit-query.ts";
import { audited, consoleRoute, fromSynapse, json, localUser, type ApiDeps } from "./http.ts";
import type { Sessions } from "./sessions.ts";

export interface MemberDeps extends ApiDeps {
  admin: SynapseAdmin;
  knex: Knex;
  query: AuditQuery;
  sessions: Sessions;
  /** MedMesh's own accounts (bots, the admin account): not managed from the console. */
  serviceAccounts: readonly string[];
}

interface SynapseUser {
  name: string;
  displayname?: string | null;
  admin?: boolean | number;
  deactivated?: boolean | number;
  last_seen_ts?: number | null;
  creation_ts?: number;
  user_type?: string | null;
}
interface Device {
  device_id: string;
  display_name?: string | null;
  last_seen_ip?: string | null;
  last_seen_ts?: number | null;
  last_seen_user_agent?: string | null;
}

const enc = encodeURIComponent;
const iso = (ms: number | null | undefined): string | null => (ms ? new Date(ms).toISOString() : null);

/** Members and devices: Synapse's admin API for accounts and devices, MedMesh's store for verification. */
export function memberRoutes(d: MemberDeps): Route[] {
  const verification = async (userIds: readonly string[]) => {
    interface Row {
      user_id: string;
      status: string;
      profession: string | null;
      registry: string;
      expires_at: Date | string | null;
    }
    const rows: Row[] = userIds.length
      ? await d
          .knex<Row>("clinician_verifications")
          .whereIn("user_id", userIds)
          .select("user_id", "status", "profession", "registry", "expires_at")
      : [];
    return new Map(rows.map((r) => [r.user_id, r]));
  };
  const managed = (raw: string): string => {
    const userId = localUser(raw, d.serverName);
    if (d.serviceAccounts.includes(userId))
      throw new Refusal(403, "M_FORBIDDEN", `${userId} is one of MedMesh's own service accounts`);
    return userId;
  };
  const devicesOf = async (userId: string): Promise<Device[]> =>
    (
      await d.admin
        .request<{ devices: Device[] }>("GET", `/_synapse/admin/v2/users/${enc(userId)}/devices`)
        .catch(fromSynapse)
    ).devices;

  return [
    consoleRoute(d, "GET", "/users", "members.read", async (ctx) => {
      const p = ctx.url.searchParams;
      const limit = Math.min(Math.max(Number(p.get("limit") ?? 50) || 50, 1), 200);
      const q = new URLSearchParams({ limit: String(limit), guests: "false", order_by: "name" });
      const search = p.get("q")?.trim();
      if (search) q.set("name", search);
      const from = p.get("from");
      if (from && /^\d+$/.test(from)) q.set("from", from);
      if (p.get("deactivated") === "true") q.set("deactivated", "true");
      const page = await d.admin
        .request<{ users: SynapseUser[]; next_token?: string; total: number }>(
          "GET",
          `/_synapse/admin/v2/users?${q.toString()}`,
        )
        .catch(fromSynapse);
      const users = page.users.filter((u) => !d.serviceAccounts.includes(u.name) && !u.user_type);
      const v = await verification(users.map((u) => u.name));
      return json({
        users: users.map((u) => ({
          user_id: u.name,
          display_name: u.displayname ?? null,
          admin: Boolean(u.admin),
          deactivated: Boolean(u.deactivated),
          last_seen: iso(u.last_seen_ts),
          verification: v.get(u.name)?.status ?? "none",
          profession: v.get(u.name)?.profession ?? null,
        })),
        total: page.total,
        next_from: page.next_token ?? null,
      });
    }),
    consoleRoute(d, "GET", "/users/{}", "members.read", async (_ctx, _actor, [raw = ""]) => {
      const userId = localUser(raw, d.serverName);
      const user = await d.admin
        .request<SynapseUser>("GET", `/_synapse/admin/v2/users/${enc(userId)}`)
        .catch(fromSynapse);
      const devices = await devicesOf(userId);
      const v = (await verification([userId])).get(userId);
      const history = await d.query.page({ object: userId }, 100);
      return json({
        user_id: userId,
        display_name: user.displayname ?? null,
        admin: Boolean(user.admin),
        deactivated: Boolean(user.deactivated),
        verification: v
          ? {
              status: v.status,
              profession: v.profession,
              registry: v.registry,
              expires_at: v.expires_at ? new Date(v.expires_at).toISOString() : null,
            }
          : null,
        devices: devices.map((x) => ({
          device_id: x.device_id,
          display_name: x.display_name ?? null,
          last_seen_ip: x.last_seen_ip ?? null,
          last_seen: iso(x.last_seen_ts),
        })),
        // Checks, re-verifications, revocations and console actions about this person.
        history: history.records.map((r) => ({
          seq: r.seq,
          at: r.at,
          actor: r.actor,
          action: r.action,
          outcome: r.outcome,
        })),
      });
    }),
    consoleRoute(
      d,
      "POST",
      "/users/{}/devices/{}/logout",
      "members.act",
      async (_ctx, actor, [raw = "", deviceId = ""]) => {
        const userId = managed(raw);
        await d.admin
          .request("DELETE", `/_synapse/admin/v2/users/${enc(userId)}/devices/${enc(deviceId)}`)
          .catch(fromSynapse);
        await audited(d, actor, "device_logged_out", userId, "ok", { device_id: deviceId });
        return json({ user_id: userId, device_id: deviceId, logged_out: true });
      },
    ),
    consoleRoute(d, "POST", "/users/{}/wipe", "members.act", async (ctx, actor, [raw = ""]) => {
      const userId = managed(raw);
      await confirmed(ctx, userId);
      // Every device, and with it every access token: clients get M_UNKNOWN_TOKEN (soft_logout
      // false) and clear their local data. Console sessions of the user end too.
      const devices = (await devicesOf(userId)).map((x) => x.device_id);
      await d.admin
        .request("POST", `/_synapse/admin/v2/users/${enc(userId)}/delete_devices`, { devices })
        .catch(fromSynapse);
      const sessions = await d.sessions.endAll(userId);
      await audited(d, actor, "remote_wipe", userId, "ok", {
        devices: devices.length,
        console_sessions: sessions,
      });
      return json({ user_id: userId, devices_deleted: devices.length });
    }),
    consoleRoute(d, "POST", "/users/{}/password", "members.act", async (ctx, actor, [raw = ""]) => {
      const userId = managed(raw);
      const body = await confirmed(ctx, userId);
      const password = body.new_password;
      if (typeof password !== "string" || password.length < 12)
        throw new Refusal(400, "M_WEAK_PASSWORD", "The new password must have at least 12 characters");
      await d.admin
        .request("POST", `/_synapse/admin/v1/reset_password/${enc(userId)}`, {
          new_password: password,
          logout_devices: true,
        })
        .catch(fromSynapse);
      await audited(d, actor, "password_reset", userId, "ok"); // never the password
      return json({ user_id: userId, password_reset: true });
    }),
    consoleRoute(d, "POST", "/users/{}/deactivate", "members.act", async (ctx, actor, [raw = ""]) => {
      const userId = managed(raw);
      if (userId === actor.userId)
        throw new Refusal(400, "M_INVALID_PARAM", "You cannot deactivate your own account here");
      const body = await confirmed(ctx, userId);
      const erase = body.erase !== false;
      await d.admin
        .request("POST", `/_synapse/admin/v1/deactivate/${enc(userId)}`, { erase })
        .catch(fromSynapse);
      await d.sessions.endAll(userId);
      await audited(d, actor, "deactivated", userId, "ok", { erase });
      return json({ user_id: userId, deactivated: true, erased: erase });
    }),
  ];
}

/** Destructive actions name their target in the body: a stray or replayed click does nothing. */
async function confirmed(
  ctx: Parameters<Route["handle"]>[0],
  userId: string,
): Promise<Record<string, unknown>> {
  const body = await ctx.json(16 * 1024);
  if (body.confirm !== userId)
    throw new Refusal(400, "M_INVALID_PARAM", `Confirm by sending confirm: "${userId}"`);
  return body;
}
