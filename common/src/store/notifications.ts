import pg from "pg";
import type { Knex } from "knex";
import type { Logger } from "pino";
import type { StoreConfig } from "./config.ts";

/**
 * PostgreSQL's LISTEN/NOTIFY over the store: a change one instance commits is announced to every
 * instance on the same database (and to itself), so per-process views can follow it at once.
 * A notification is a hint, not a record: what changed is read from the tables. When the listening
 * connection was lost (notifications may have been missed), `resync` is called once it is back, and
 * the listener reloads what it holds.
 */
export interface NotificationStore {
  listen(channel: string, handler: (payload: string) => void, resync?: () => void): Promise<void>;
  /** Sent when the statement commits (outside a transaction: at once). */
  notify(channel: string, payload: string): Promise<void>;
  close(): Promise<void>;
}

/** Channel names are SQL identifiers: lower case letters, digits and underscores. */
const CHANNEL = /^[a-z_][a-z0-9_]{0,62}$/;

interface PgliteLike {
  listen(channel: string, cb: (payload: string) => void): Promise<unknown>;
}

export function createNotifications(
  config: StoreConfig,
  knex: Knex,
  pglite: PgliteLike | undefined,
  log?: Logger,
): NotificationStore {
  const notify = async (channel: string, payload: string): Promise<void> => {
    if (!CHANNEL.test(channel)) throw new Error(`not a notification channel name: ${channel}`);
    await knex.raw("SELECT pg_notify(?, ?)", [channel, payload]);
  };
  if (config.type === "pglite") {
    // One process's database: its own notifications are all there are.
    return {
      notify,
      listen: async (channel, handler) => {
        if (!CHANNEL.test(channel)) throw new Error(`not a notification channel name: ${channel}`);
        if (!pglite) throw new Error("no embedded database to listen on");
        await pglite.listen(channel, handler);
      },
      close: () => Promise.resolve(),
    };
  }

  // One dedicated connection (outside knex's pool: a pooled connection would be handed to queries
  // and released); re-established with backoff when it drops, then every listener resyncs.
  const handlers = new Map<string, { handler: (payload: string) => void; resync?: () => void }[]>();
  let client: pg.Client | undefined;
  let connecting: Promise<pg.Client> | undefined;
  let closed = false;
  let retryMs = 250;

  const connect = (): Promise<pg.Client> => {
    connecting ??= (async () => {
      const c = new pg.Client({
        connectionString: config.url,
        ...(config.password === undefined ? {} : { password: config.password }),
      });
      c.on("notification", (n) => {
        for (const h of handlers.get(n.channel) ?? []) h.handler(n.payload ?? "");
      });
      c.on("error", (err) => {
        log?.warn({ err }, "store notification connection failed; reconnecting");
        lost(c);
      });
      c.on("end", () => {
        lost(c);
      });
      await c.connect();
      for (const channel of handlers.keys()) await c.query(`LISTEN ${channel}`);
      client = c;
      retryMs = 250;
      return c;
    })().finally(() => {
      connecting = undefined;
    });
    return connecting;
  };

  const lost = (c: pg.Client): void => {
    if (client !== c || closed) return;
    client = undefined;
    c.removeAllListeners("notification");
    const reconnect = (): void => {
      if (closed) return;
      connect().then(
        () => {
          for (const list of handlers.values()) for (const h of list) h.resync?.();
        },
        (err: unknown) => {
          log?.warn({ err, retry_ms: retryMs }, "store notification connection not back yet");
          retryMs = Math.min(retryMs * 2, 30_000);
          setTimeout(reconnect, retryMs).unref();
        },
      );
    };
    setTimeout(reconnect, retryMs).unref();
  };

  return {
    notify,
    listen: async (channel, handler, resync) => {
      if (!CHANNEL.test(channel)) throw new Error(`not a notification channel name: ${channel}`);
      const first = !handlers.has(channel);
      handlers.set(channel, [...(handlers.get(channel) ?? []), { handler, ...(resync ? { resync } : {}) }]);
      const c = client ?? (await connect());
      if (first && client === c) await c.query(`LISTEN ${channel}`);
    },
    close: async () => {
      closed = true;
      const c = client;
      client = undefined;
      await c?.end().catch(() => undefined);
    },
  };
}
