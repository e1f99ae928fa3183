import type { Logger } from "pino";
import { DEFAULT_PERMISSION_CONFIG, type PermissionConfigType } from "./permission-config.ts";
import { logoutToken, passwordLogin, type Credentials } from "./session.ts";

// Only room ids and membership: no timeline, state or account data is needed to leave rooms.
const ROOMS_ONLY_FILTER = JSON.stringify({
  presence: { types: [] },
  account_data: { types: [] },
  room: {
    include_leave: true,
    timeline: { limit: 1 },
    state: { types: [] },
    ephemeral: { types: [] },
    account_data: { types: [] },
  },
});

interface SyncRooms {
  rooms?: {
    join?: Record<string, unknown>;
    invite?: Record<string, unknown>;
    leave?: Record<string, unknown>;
  };
}

/**
 * `POST /` for one homeserver: every account of the pool leaves and forgets every room (pending
 * invites are rejected), its TI-M permission config (the profile's type) returns to the default and its direct-room map
 * is emptied. Done with plain client-API calls on a housekeeping login per account, in parallel,
 * so it does not depend on any device being logged in.
 */
class ExpiredToken extends Error {}

export class Housekeeping {
  private readonly sessions = new Map<string, { userId: string; token: string }>();
  /**
   * Synapse answers a repeated request of one token with the same parameters from its sync
   * response cache (for minutes); an initial sync returns at once whatever its timeout, so a
   * different timeout on each cleanup makes each one a fresh look at the rooms.
   */
  private syncs = 0;
  private readonly clientUrl: string;
  private readonly log: Logger;
  private readonly permissionConfigType: PermissionConfigType;
  constructor(clientUrl: string, log: Logger, permissionConfigType: PermissionConfigType) {
    this.clientUrl = clientUrl;
    this.log = log;
    this.permissionConfigType = permissionConfigType;
  }

  async clean(accounts: readonly Credentials[]): Promise<void> {
    await Promise.all(accounts.map((a) => this.cleanAccount(a)));
  }

  /** Logs the housekeeping sessions in ahead of the first cleanup (password hashing is slow). */
  async prepare(accounts: readonly Credentials[]): Promise<void> {
    await Promise.all(accounts.map((a) => this.session(a)));
  }

  private async cleanAccount(account: Credentials): Promise<void> {
    const { userId, token } = await this.session(account);
    try {
      await this.cleanWith(userId, token);
    } catch (err) {
      if (!(err instanceof ExpiredToken)) throw err;
      this.sessions.delete(account.username);
      const fresh = await this.session(account);
      await this.cleanWith(fresh.userId, fresh.token);
    }
  }

  private async session(account: Credentials): Promise<{ userId: string; token: string }> {
    const known = this.sessions.get(account.username);
    if (known) return known;
    const login = await passwordLogin(this.clientUrl, account, "medmesh-tim-housekeeping");
    const session = { userId: login.userId, token: login.accessToken };
    this.sessions.set(account.username, session);
    return session;
  }

  /** Logs the housekeeping sessions out (driver shutdown). */
  async stop(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((s) => logoutToken(this.clientUrl, s.token)));
  }

  private async cleanWith(userId: string, token: string): Promise<void> {
    const call = (method: string, path: string, body?: unknown): Promise<Response> =>
      fetch(new URL(`/_matrix/client/v3${path}`, this.clientUrl), {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
    this.syncs += 1;
    const sync = await call(
      "GET",
      `/sync?timeout=${String(this.syncs)}&filter=${encodeURIComponent(ROOMS_ONLY_FILTER)}`,
    );
    if (sync.status === 401) throw new ExpiredToken();
    if (!sync.ok) throw new Error(`cleanup sync of ${userId} failed: ${String(sync.status)}`);
    const rooms = ((await sync.json()) as SyncRooms).rooms ?? {};
    const synced = Date.now();
    const current = [...Object.keys(rooms.join ?? {}), ...Object.keys(rooms.invite ?? {})];
    const joined = new Set(current);
    const all = [...current, ...Object.keys(rooms.leave ?? {})];
    const user = encodeURIComponent(userId);
    // Each room left and forgotten in one go, 20 rooms at a time; the account data meanwhile.
    const resets = (
      [
        [this.permissionConfigType, DEFAULT_PERMISSION_CONFIG],
        ["m.direct", {}],
      ] as const
    ).map(async ([type, content]) => {
      const res = await call("PUT", `/user/${user}/account_data/${type}`, content);
      if (!res.ok) throw new Error(`cleanup of ${userId}: resetting ${type} failed (${String(res.status)})`);
    });
    await inBatches(all, 20, async (roomId) => {
      const room = encodeURIComponent(roomId);
      if (joined.has(roomId)) {
        const left = await call("POST", `/rooms/${room}/leave`, {});
        if (!left.ok)
          throw new Error(`cleanup: ${userId} could not leave ${roomId} (${String(left.status)})`);
      }
      const res = await call("POST", `/rooms/${room}/forget`, {});
      if (!res.ok) this.log.warn({ userId, roomId, status: res.status }, "cleanup: forget failed");
    });
    await Promise.all(resets);
    this.log.info({ userId, rooms: all.length, roomsMs: Date.now() - synced }, "cleanup: account done");
  }
}

async function inBatches<T>(
  items: readonly T[],
  size: number,
  fn: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const item = items[next++] as T;
      await fn(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(size, items.length) }, worker));
}
