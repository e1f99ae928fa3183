import { createHash, randomBytes } from "node:crypto";
import type { Knex } from "knex";

export interface Session {
  userId: string;
  csrfToken: string;
  createdAt: Date;
  expiresAt: Date;
}

export interface SessionOptions {
  /** A session unused this long ends. */
  idleMs: number;
  /** And every session ends this long after sign-in, used or not. */
  maxMs: number;
  now?: () => Date;
}

export interface Sessions {
  /** A new session: the cookie's value (shown once, stored only as a hash) and the session. */
  create(userId: string): Promise<{ id: string; session: Session }>;
  /** The live session of a cookie value (and its idle expiry pushed on), or why there is none. */
  use(id: string): Promise<Session | "unknown" | "expired">;
  end(id: string): Promise<void>;
  /** Ends every session of a user (their role was taken away, or their account wiped). */
  endAll(userId: string): Promise<number>;
}

const hashOf = (id: string): string => createHash("sha256").update(id).digest("hex");

/** Console sessions in the store (`console_sessions`), so any API instance can answer and a restart keeps them. */
export function createSessions(knex: Knex, opts: SessionOptions): Sessions {
  const now = opts.now ?? (() => new Date());
  const table = () => knex("console_sessions");
  return {
    async create(userId) {
      const id = randomBytes(32).toString("base64url");
      const t = now();
      const session: Session = {
        userId,
        csrfToken: randomBytes(24).toString("base64url"),
        createdAt: t,
        expiresAt: new Date(Math.min(t.getTime() + opts.idleMs, t.getTime() + opts.maxMs)),
      };
      // Expired sessions of anyone are cleared as new ones start: the table stays small.
      await table().where("expires_at", "<", t).delete();
      await table().insert({
        id_hash: hashOf(id),
        user_id: userId,
        csrf_token: session.csrfToken,
        created_at: session.createdAt,
        expires_at: session.expiresAt,
      });
      return { id, session };
    },
    async use(id) {
      const row = (await table()
        .where({ id_hash: hashOf(id) })
        .first()) as
        | { user_id: string; csrf_token: string; created_at: Date | string; expires_at: Date | string }
        | undefined;
      if (!row) return "unknown";
      const t = now();
      const createdAt = new Date(row.created_at);
      const expiresAt = new Date(row.expires_at);
      if (expiresAt <= t) {
        await table()
          .where({ id_hash: hashOf(id) })
          .delete();
        return "expired";
      }
      const next = new Date(Math.min(t.getTime() + opts.idleMs, createdAt.getTime() + opts.maxMs));
      // Written at most once a minute per session: reading a page is not a write each time.
      if (next.getTime() - expiresAt.getTime() > 60_000)
        await table()
          .where({ id_hash: hashOf(id) })
          .update({ expires_at: next });
      return {
        userId: row.user_id,
        csrfToken: row.csrf_token,
        createdAt,
        expiresAt: next > expiresAt ? next : expiresAt,
      };
    },
    async end(id) {
      await table()
        .where({ id_hash: hashOf(id) })
        .delete();
    },
    async endAll(userId) {
      // The rows, not the count: the embedded store's driver answers delete() with a result object.
      const ended = (await table().where({ user_id: userId }).delete().returning("id_hash")) as unknown[];
      return ended.length;
    },
  };
}
