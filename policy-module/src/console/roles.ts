import type { Knex } from "knex";
import type { SynapseAdmin } from "@medmesh/common";

export const ROLES = ["org_admin", "reviewer", "auditor"] as const;
export type Role = (typeof ROLES)[number];

/** What each role may do in the console; the API checks these, the pages only hide what is refused. */
export const PERMISSIONS = {
  "reviews.read": ["org_admin", "reviewer"],
  "reviews.decide": ["org_admin", "reviewer"],
  "members.read": ["org_admin", "reviewer", "auditor"],
  "members.act": ["org_admin"],
  "audit.read": ["org_admin", "auditor"],
  "status.read": ["org_admin", "reviewer", "auditor"],
  "bridge.retry": ["org_admin"],
  "roles.manage": ["org_admin"],
  "channels.manage": ["org_admin"],
  "departments.manage": ["org_admin"],
  // Reviewers and auditors see the groups and their pending knocks; only org admins act on them.
  "groups.read": ["org_admin", "reviewer", "auditor"],
  "groups.manage": ["org_admin"],
} as const satisfies Record<string, readonly Role[]>;
export type Permission = keyof typeof PERMISSIONS;

export const allows = (role: Role, p: Permission): boolean =>
  (PERMISSIONS[p] as readonly Role[]).includes(role);

export const permissionsOf = (role: Role): Permission[] =>
  (Object.keys(PERMISSIONS) as Permission[]).filter((p) => allows(role, p));

export const isRole = (v: unknown): v is Role =>
  typeof v === "string" && (ROLES as readonly string[]).includes(v);

export interface Grant {
  user_id: string;
  role: Role;
  granted_by: string;
  granted_at: string;
  /** "synapse_admin": a server admin of the organisation's Synapse (not revocable here). */
  source: "console" | "synapse_admin";
}

export interface Roles {
  /** The user's role, or undefined when they have none (they cannot use the console). */
  roleOf(userId: string): Promise<Role | undefined>;
  list(): Promise<Grant[]>;
  grant(userId: string, role: Role, by: string): Promise<void>;
  revoke(userId: string): Promise<boolean>;
}

/**
 * Roles granted in the console are in `console_roles`. The first org admins are the organisation's
 * Synapse server admins (the deployment's demo admin, or whoever the operator made admin): an
 * organisation always has one, and nobody needs a second list of admins in the config.
 */
export function createRoles(
  knex: Knex,
  admin: SynapseAdmin,
  serviceAccounts: readonly string[],
  cacheMs = 30_000,
): Roles {
  const table = () => knex("console_roles");
  const adminCache = new Map<string, { admin: boolean; at: number }>();
  const isServerAdmin = async (userId: string): Promise<boolean> => {
    const hit = adminCache.get(userId);
    if (hit && Date.now() - hit.at < cacheMs) return hit.admin;
    const { admin: isAdmin } = await admin
      .request<{ admin?: boolean }>("GET", `/_synapse/admin/v1/users/${encodeURIComponent(userId)}/admin`)
      .catch(() => ({ admin: false }));
    adminCache.set(userId, { admin: isAdmin === true, at: Date.now() });
    return isAdmin === true;
  };
  return {
    async roleOf(userId) {
      if (serviceAccounts.includes(userId)) return undefined; // MedMesh's own accounts
      if (await isServerAdmin(userId)) return "org_admin";
      const row = await knex<{ user_id: string; role: string }>("console_roles")
        .where({ user_id: userId })
        .first("role");
      return row && isRole(row.role) ? row.role : undefined;
    },
    async list() {
      const rows = (await table().orderBy("user_id")) as {
        user_id: string;
        role: Role;
        granted_by: string;
        granted_at: Date | string;
      }[];
      const { users } = await admin.request<{ users: { name: string }[] }>(
        "GET",
        "/_synapse/admin/v2/users?admins=true&deactivated=false&limit=100",
      );
      const server: Grant[] = users
        .filter((u) => !serviceAccounts.includes(u.name))
        .map((u) => ({
          user_id: u.name,
          role: "org_admin",
          granted_by: "synapse",
          granted_at: "",
          source: "synapse_admin",
        }));
      return [
        ...server,
        ...rows.map((r) => ({
          user_id: r.user_id,
          role: r.role,
          granted_by: r.granted_by,
          granted_at: new Date(r.granted_at).toISOString(),
          source: "console" as const,
        })),
      ];
    },
    async grant(userId, role, by) {
      await table()
        .insert({ user_id: userId, role, granted_by: by, granted_at: new Date() })
        .onConflict("user_id")
        .merge();
    },
    async revoke(userId) {
      const gone = (await table().where({ user_id: userId }).delete().returning("user_id")) as unknown[];
      return gone.length > 0;
    },
  };
}
