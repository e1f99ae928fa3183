import { asUser, ensureAppserviceUser, type AsUser } from "@medmesh/common";
import type { Logger } from "pino";
import type { User } from "../interop/types.ts";
import type { GhostStore } from "../store/index.ts";

const AVATAR_MAX_BYTES = 1024 * 1024;
const AVATAR_TYPES = /^image\/(png|jpeg|webp|gif)$/;

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

/** The vendor of a ghost (from its user ID), undefined for any other user. */
export function vendorOfGhost(userId: string): string | undefined {
  const localpart = /^@([^:]+):/.exec(userId)?.[1];
  return localpart === undefined ? undefined : parseGhostLocalpart(localpart)?.vendor;
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
  store: GhostStore;
  /** Configured vendor IDs: a ghost of another "vendor" does not exist. */
  vendors: readonly string[];
  /** Per vendor, the origins its users' `avatar_url`s may point at (the bridge fetches them). */
  avatarOrigins?: ReadonlyMap<string, readonly string[]>;
  log?: Logger;
  /** A ghost's registration (or its name beside one) changed: it is due for verification. */
  onRegistration?: (userId: string) => void;
}): Ghosts {
  /** What the bridge last wrote for a ghost: its name, registration and avatar URL (as stored). */
  const known = new Map<string, { name: string; registration: string | null; avatar: string | null }>();

  const userId = (vendor: string, remoteId: string) => `@${ghostLocalpart(vendor, remoteId)}:${d.serverName}`;
  const as = (id: string) => asUser(d.homeserverUrl, d.asToken, id);

  /**
   * The vendor's picture as the ghost's avatar: fetched only from the vendor's configured origins
   * (no requests from inside the hospital to wherever a vendor points), at most 1 MiB, PNG, JPEG,
   * WebP or GIF, uploaded as the ghost through the proxy (which strips its metadata).
   */
  const setAvatar = async (vendor: string, id: string, avatarUrl: string): Promise<void> => {
    const url = new URL(avatarUrl);
    if (!(d.avatarOrigins?.get(vendor) ?? []).includes(url.origin))
      throw new Error(
        `${url.origin} is not one of ${vendor}'s avatar origins (interop.vendors[].avatar_origins)`,
      );
    const res = await fetch(url, { redirect: "error", signal: AbortSignal.timeout(10_000) });
    const type = (res.headers.get("content-type") ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
    if (!res.ok) throw new Error(`the avatar answered ${String(res.status)}`);
    if (!AVATAR_TYPES.test(type))
      throw new Error(`the avatar is ${type || "untyped"}, not PNG, JPEG, WebP or GIF`);
    if (Number(res.headers.get("content-length") ?? 0) > AVATAR_MAX_BYTES)
      throw new Error("the avatar is over 1 MiB");
    const data = Buffer.from(await res.arrayBuffer());
    if (data.length > AVATAR_MAX_BYTES) throw new Error("the avatar is over 1 MiB");
    const raw = { data, contentType: type };
    const upload = await as(id)<{ content_uri: string }>("POST", "/_matrix/media/v3/upload", undefined, {
      raw,
    });
    await as(id)("PUT", `/_matrix/client/v3/profile/${encodeURIComponent(id)}/avatar_url`, {
      avatar_url: upload.content_uri,
    });
  };
  const ghosts: Ghosts = {
    as,
    isGhost: (id) => id.startsWith("@bridge_") && id.endsWith(`:${d.serverName}`),
    async ensure(vendor, remoteId, profile) {
      const id = userId(vendor, remoteId);
      const name = profile?.display_name;
      const registration = profile?.registration ? stableJson(profile.registration) : undefined;
      const avatar = profile?.avatar_url;
      const last = known.get(id);
      if (
        last &&
        (name === undefined || last.name === name) &&
        (registration === undefined || last.registration === registration) &&
        (avatar === undefined || last.avatar === avatar)
      )
        return id;
      const row = await d.store.profile(id);
      if (!row) {
        await ensureAppserviceUser(d.homeserverUrl, d.asToken, id.slice(1, id.indexOf(":")));
        await d.store.add(id, vendor, remoteId);
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
        await d.store.setProfile(id, {
          display_name: displayName,
          ...(reregistered ? { registration } : {}),
          ...(due ? { verification_due: true } : {}),
        });
        if (due) d.onRegistration?.(id);
      }
      let avatarSource = row?.avatar_source ?? null;
      if (avatar !== undefined && avatar !== avatarSource) {
        // A picture that cannot be had does not fail the event: it is tried with the next profile.
        await setAvatar(vendor, id, avatar).then(
          async () => {
            avatarSource = avatar;
            await d.store.setAvatarSource(id, avatar);
          },
          (err: unknown) => {
            d.log?.warn({ user_id: id, err: (err as Error).message }, "could not set the ghost's avatar");
          },
        );
      }
      known.set(id, { name: displayName, registration: registration ?? stored, avatar: avatarSource });
      return id;
    },
    async remoteOf(id) {
      const row = await d.store.remote(id);
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
