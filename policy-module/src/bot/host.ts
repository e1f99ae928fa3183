import {
  LeadershipLost,
  type AppserviceEvent,
  type DocumentStore,
  type Leader,
  type LeaderCalls,
  type NotificationStore,
} from "@medmesh/common";
import type { Knex } from "knex";
import type { Logger } from "pino";
import { startBot, type Bot, type BotDeps } from "./bot.ts";
import { botRooms, createBotOutbox } from "./outbox.ts";
import { createBotRecorder } from "./recorder.ts";

/** The singleton job of the policy module's E2EE bots: each device runs on one replica, its leader. */
export const BOTS_JOB = "e2ee-bots";
/** The store's notification channel: a bot's inbox or outbox has new rows (payload: the bot's user ID). */
const CHANNEL = "medmesh_bots";
/** A bot that failed to start is tried again this often; running bots look at their rows this often anyway. */
const RETRY_MS = 10_000;

export type HostedBotDeps = Omit<BotDeps, "botUserId" | "store" | "leader">;

export interface HostedBot {
  readonly userId: string;
  /** The bot running here; LeadershipLost (M_UNAVAILABLE) where another replica runs the bots. */
  running(): Promise<Bot>;
  /** Queues a notice for a user (any replica); the bot's replica sends it from the bot's device. */
  tell(userId: string, text: string): Promise<void>;
}

/**
 * The policy module's E2EE bots on the elected leader of BOTS_JOB (docs/replicas.md). Every
 * replica registers the same bots and records what they are sent (`onEvents`, before the
 * transaction's ack) and what they must say (`tell`) in the store; only the leader runs them, each
 * with its kept device and its crypto store restored from the store. A standby starts them when
 * elected; a leader stops them the moment it loses the lease. The store's notifications tell the
 * leader of rows another replica added.
 */
export function createBotHost(d: {
  /**
   * The calls on BOTS_JOB's leader, and its leader handle (on a replica that must not run bots,
   * `identity.bot: false`, one that never leads).
   */
  calls: LeaderCalls;
  store: { knex: Knex; documents: DocumentStore; notifications: NotificationStore };
  /** Whether a user ID is one of the bots (department accounts may be created on any replica). */
  isBot(userId: string): boolean;
  /** For the bots' rooms as Synapse knows them, when the store knows none yet (an upgrade). */
  homeserverUrl: string;
  asToken: string;
  log: Logger;
}) {
  const leader = d.calls.leader;
  const entries = new Map<
    string,
    { deps: () => HostedBotDeps | Promise<HostedBotDeps>; bot?: Promise<Bot> }
  >();
  const record = createBotRecorder({ knex: d.store.knex, isBot: (u) => d.isBot(u) });
  const log = d.log.child({ component: "bots" });

  const launch = (userId: string): Promise<Bot> | undefined => {
    const e = entries.get(userId);
    if (!e || !leader.isLeader()) return undefined;
    e.bot ??= (async () => {
      const bot = await startBot({
        ...(await e.deps()),
        botUserId: userId,
        store: d.store,
        leader,
      });
      // Lost (or removed) while it started: stopped at once.
      if (!leader.isLeader() || entries.get(userId) !== e) {
        bot.stop();
        throw new LeadershipLost(BOTS_JOB);
      }
      return bot;
    })().catch((err: unknown) => {
      if (entries.get(userId) === e) delete e.bot;
      if (!(err instanceof LeadershipLost)) log.warn({ err, bot: userId }, "a bot could not start");
      throw err;
    });
    return e.bot;
  };
  const launchAll = (): void => {
    for (const userId of entries.keys()) launch(userId)?.catch(() => undefined);
  };
  const stopAll = (): void => {
    for (const [userId, e] of entries) {
      const bot = e.bot;
      delete e.bot;
      void bot?.then(
        (b) => {
          b.stop();
          log.info({ bot: userId }, "bot stopped: this replica no longer leads the bots");
        },
        () => undefined,
      );
    }
  };
  const wake = (userId: string): void => {
    void entries
      .get(userId)
      ?.bot?.then((b) => {
        b.wake();
      })
      .catch(() => undefined);
  };
  const wakeAll = (): void => {
    for (const userId of entries.keys()) wake(userId);
  };
  /**
   * A bot of which `bot_rooms` knows no room (the first start after the upgrade that made the
   * table, before its client ran anywhere): its rooms are asked of Synapse, as the appservice,
   * before the next transaction is recorded — else its events would be taken for another room's.
   */
  const seeds: Promise<void>[] = [];
  const seed = async (userId: string): Promise<void> => {
    if (await d.store.knex("bot_rooms").where({ bot_user_id: userId }).first("room_id")) return;
    const url = new URL("/_matrix/client/v3/joined_rooms", d.homeserverUrl);
    url.searchParams.set("user_id", userId);
    const res = await fetch(url, {
      headers: { authorization: `Bearer ${d.asToken}` },
      signal: AbortSignal.timeout(10_000),
    });
    if (!res.ok) return; // not registered yet: it is in no room
    const { joined_rooms: joined } = (await res.json()) as { joined_rooms?: string[] };
    if (joined?.length) await botRooms(d.store.knex).replace(userId, joined);
  };
  leader.onElected(launchAll);
  leader.onLost(stopAll);
  let timer: NodeJS.Timeout | undefined;

  return {
    leader,
    leading: (): boolean => leader.isLeader(),
    /**
     * An operation that needs a bot's device: run here on the leader, sent to the leader from a
     * standby (its answer or error returned as if run here).
     */
    onLeader: d.calls.define,
    /** Registers a bot (on every replica); it starts here now or once this replica is elected. */
    add(userId: string, deps: () => HostedBotDeps | Promise<HostedBotDeps>): HostedBot {
      if (!entries.has(userId)) {
        entries.set(userId, { deps });
        seeds.push(
          seed(userId).catch((err: unknown) => {
            log.warn({ err, bot: userId }, "could not ask Synapse for a bot's rooms");
          }),
        );
      }
      launch(userId)?.catch(() => undefined);
      const outbox = createBotOutbox(d.store.knex, userId);
      return {
        userId,
        running: () => launch(userId) ?? Promise.reject(new LeadershipLost(BOTS_JOB)),
        async tell(to, text) {
          await outbox.queue(to, text);
          await d.store.notifications.notify(CHANNEL, userId);
        },
      };
    },
    /** Forgets a bot (a department ended): stopped here, not started again. */
    remove(userId: string): void {
      const e = entries.get(userId);
      entries.delete(userId);
      void e?.bot?.then(
        (b) => {
          b.stop();
        },
        () => undefined,
      );
    },
    /** The transaction's events for the bots, recorded (any replica); the bots' replica is told. */
    async onEvents(events: readonly AppserviceEvent[]): Promise<void> {
      if (seeds.length) await Promise.all(seeds.splice(0));
      for (const bot of await record(events)) {
        wake(bot);
        await d.store.notifications.notify(CHANNEL, bot).catch((err: unknown) => {
          // Recorded all the same: the leader finds the rows at its next look.
          log.warn({ err, bot }, "could not announce a bot's new inbox rows");
        });
      }
    },
    async start(): Promise<void> {
      await d.store.notifications.listen(CHANNEL, wake, wakeAll);
      timer = setInterval(() => {
        launchAll();
        wakeAll();
      }, RETRY_MS);
      timer.unref();
    },
    /** After the leadership stopped (which stops the bots): nothing more starts. */
    stop(): void {
      clearInterval(timer);
      stopAll();
      entries.clear();
    },
  };
}
export type BotHost = ReturnType<typeof createBotHost>;

/** BOTS_JOB's handle on a replica that never runs the bots: it never leads. */
export function neverLeader(job: string, current: () => Promise<string | undefined>): Leader {
  return {
    job,
    isLeader: () => false,
    fence: () => Promise.reject(new LeadershipLost(job)),
    current,
    onElected: () => undefined,
    onLost: () => undefined,
  };
}
