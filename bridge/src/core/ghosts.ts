import { asUser, ensureAppserviceUser, type AsUser } from "@medmesh/common";
import type { Knex } from "knex";
import type { User } from "../interop/types.ts";

/**
 * A vendor's user as a Matrix "ghost": `@bridge_<vendor>_<id>:<server>`, in the bridge's
 * exclusive namespace. The remote ID is kept readable where Matrix allows (a-z, 0-9, `.`, `-`)
 * and escaped as `=xx` (UTF-8 hex) elsewhere, so two remote IDs never share a ghost.
 */
export function ghostLocalpart(vendor: string, remoteId: string): string {
  let out = "";
  for (const byte of Buffer.from(remoteId, "utf8")) {
    const c = String.fromCharCode(byte);
    out += /[a-z0-9.-]/.test(c) ? c : `=${byte.toString(16).padStart(2, "0")}`;
  }
  return `bridge_${vendor}_${out}`;
}

/** The inverse of ghostLocalpart, for ghosts the bridge has not met yet (a Matrix user invited one). */
export function parseGhostLocalpart(localpart: string): { vendor: string; remoteId: string } | undefined {
  const m = /^bridge_([a-z0-9-]+)_((?:[a-z0-9.-]|=[0-9a-f]{2})+)$/.exec(localpart);
  if (!m?.[1] || !m[2]) return undefined;
  const bytes: number[] = [];
  for (let i = 0; i < m[2].length; i++) {
    const c = m[2][i] ?? "";
    if (c === "=") {
      bytes.push(parseInt(m[2].slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(c.charCodeAt(0));
  }
  return { vendor: m[1], remoteId: Buffer.from(bytes).toString("utf8") };
}

export interface Ghosts {
  /** The ghost's Matrix ID, registered (and named) on first use. */
  ensure(vendor: string, remoteId: string, profile?: User): Promise<string>;
  /** The remote ID behind a ghost, or undefined for a real Matrix user. */
  remoteOf(userId: string): Promise<{ vendor: string; remoteId: string } | undefined>;
  isGhost(userId: string): boolean;
  as(userId: string): AsUser;
}

export function createGhosts(d: {
  homeserverUrl: string;
  asToken: string;
  serverName: string;
  knex: Knex;
  /** Configured vendor IDs: a ghost of another "vendor" does not exist. */
  vendors: readonly string[];
  /** A ghost's registration (or its name beside one) changed: it is due for verification. */
  onRegistration?: (userId: string) => void;
}): Ghosts {
  /** What the bridge last wrote for a ghost: its name and registration (as stored). */
  const known = new Map<string, { name: string; registration: string | null }>();
  const userId = (vendor: string, remoteId: string) => `@${ghostLocalpart(vendor, remoteId)}:${d.serverName}`;
  const as = (id: string) => asUser(d.homeserverUrl, d.asToken, id);
  const ghosts: Ghosts = {
    as,
    isGhost: (id) => id.startsWith("@bridge_") && id.endsWith(`:${d.serverName}`),
    async ensure(vendor, remoteId, profile) {
      const id = userId(vendor, remoteId);
      const name = profile?.display_name;
      const registration = profile?.registration ? stableJson(profile.registration) : undefined;
      const last = known.get(id);
      if (
        last &&
        (name === undefined || last.name === name) &&
        (registration === undefined || last.registration === registration)
      )
        return id;
      const row = await d
        .knex("bridge_ghosts")
        .where({ user_id: id })
        .first<{ display_name: string | null; registration: unknown } | undefined>(
          "display_name",
          "registration",
        );
      if (!row) {
        await ensureAppserviceUser(d.homeserverUrl, d.asToken, id.slice(1, id.indexOf(":")));
        await d
          .knex("bridge_ghosts")
          .insert({ user_id: id, vendor, remote_id: remoteId })
          .onConflict("user_id")
          .ignore();
      }
      const stored = row?.registration == null ? null : stableJson(row.registration);
      const displayName = name ?? row?.display_name ?? remoteId;
      const renamed = displayName !== row?.display_name;
      const reregistered = registration !== undefined && registration !== stored;
      // A new registration, or a new name beside one, is for the identity module to check (again).
      const due = reregistered || (renamed && (registration ?? stored) !== null);
      if (renamed) {
        await as(id)("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(id)}/displayname`, {
          displayname: displayName,
        });
      }
      if (renamed || due) {
        await d
          .knex("bridge_ghosts")
          .where({ user_id: id })
          .update({
            display_name: displayName,
            ...(reregistered ? { registration } : {}),
            ...(due ? { verification_due: true } : {}),
          });
        if (due) d.onRegistration?.(id);
      }
      known.set(id, { name: displayName, registration: registration ?? stored });
      return id;
    },
    async remoteOf(id) {
      const row = await d
        .knex("bridge_ghosts")
        .where({ user_id: id })
        .first<{ vendor: string; remote_id: string } | undefined>("vendor", "remote_id");
      if (row) return { vendor: row.vendor, remoteId: row.remote_id };
      if (!ghosts.isGhost(id)) return undefined;
      const parsed = parseGhostLocalpart(id.slice(1, id.lastIndexOf(`:${d.serverName}`)));
      if (!parsed || !d.vendors.includes(parsed.vendor)) return undefined;
      await ghosts.ensure(parsed.vendor, parsed.remoteId);
      return parsed;
    },
  };
  return ghosts;
}

/** A registration as stored (jsonb comes back as an object), in the form the bridge compares. */
function stableJson(value: unknown): string {
  const v = (typeof value === "string" ? JSON.parse(value) : value) as {
    registry?: unknown;
    number?: unknown;
  };
  return JSON.stringify({ registry: v.registry, number: v.number });
}
