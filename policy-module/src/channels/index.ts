import { createAuditLog, type AppserviceEvent, type Store, type SynapseAdmin } from "@medmesh/common";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import { startBot, type Bot } from "../bot/index.ts";
import type { PeerClient } from "../directory/index.ts";
import { createPublisher } from "./publisher.ts";
import { createReconciler, type Member } from "./reconciler.ts";
import { CHANNEL_MEMBERS_PATH, channelPeerRoutes } from "./routes.ts";
import { createChannelService } from "./service.ts";
import { channelsStore } from "./store.ts";

export { CHANNELS_MIGRATIONS } from "./migrations.ts";
export { mountChannelsAdmin, channelJson } from "./routes.ts";
export { ChannelSpecSchema, URGENT_KEY } from "./spec.ts";
export type { ChannelService } from "./service.ts";

/** A full reconciliation this often; a change of this organisation's verified clinicians starts one at once. */
export const RECONCILE_MS = 5 * 60_000;
const VERIFIED_POLL_MS = 2_000;

export const channelBotOf = (serverName: string): string => `@medmesh-channels:${serverName}`;

/**
 * Broadcast channels (docs/channels.md): rooms whose members read and only publishers post,
 * end-to-end encrypted by the channel bot's device, kept to their targets by a reconciler.
 */
export async function startChannels(d: {
  serverName: string;
  /** The room-admin bot (`@medmesh`), invited into every channel. */
  roomAdminBotUserId: string;
  store: Pick<Store, "knex" | "leases" | "documents">;
  homeserverUrl: string;
  asToken: string;
  admin: SynapseAdmin;
  /** This organisation's verified clinicians now, and a number that changes whenever they do. */
  clinicians: { all(): readonly Member[]; version(): number };
  peers: PeerClient;
  peerServers: () => string[];
  peerTimeoutMs: number;
  log: Logger;
  metrics: Registry;
  reconcileMs?: number;
}) {
  const botUserId = channelBotOf(d.serverName);
  const log = d.log.child({ capability: "channels" });
  const channels = channelsStore(d.store.knex);
  const auditLog = createAuditLog(d.store.knex);
  const audit = () => auditLog;
  const startChannelBot = () =>
    startBot({
      homeserverUrl: d.homeserverUrl,
      asToken: d.asToken,
      botUserId,
      displayName: "MedMesh channels",
      ignoredMembers: [],
      admin: d.admin,
      documents: d.store.documents,
      log,
      metrics: d.metrics,
      // Members cannot post in channels; nothing the bot is sent is answered.
      onMessage: () => Promise.resolve(undefined),
    });
  let bot: Promise<Bot> | undefined;
  const botNow = (): Promise<Bot> => {
    bot ??= startChannelBot().catch((err: unknown) => {
      bot = undefined; // tried again on the next use
      throw err;
    });
    return bot;
  };
  const publisher = createPublisher({
    client: async () => (await botNow()).client,
    botUserId,
    roomAdminBotUserId: d.roomAdminBotUserId,
    channels,
    log,
  });
  // The bot runs where there are channels; an organisation without any starts it at the first.
  if ((await channels.all()).length > 0) await botNow();
  const localMembers = (): Member[] =>
    d.clinicians.all().map((c) => ({ user_id: c.user_id, profession: c.profession }));
  const reconciler = createReconciler({
    serverName: d.serverName,
    channels,
    publisher,
    botUserId,
    roomAdminBotUserId: d.roomAdminBotUserId,
    leases: d.store.leases,
    audit,
    localMembers,
    remoteMembers: async (server, professions) => {
      const q = professions.length ? `?professions=${encodeURIComponent(professions.join(","))}` : "";
      const body = (await d.peers.getJson(server, `${CHANNEL_MEMBERS_PATH}${q}`, d.peerTimeoutMs * 5)) as {
        members?: unknown;
      };
      if (!Array.isArray(body.members)) throw new Error("no members in the answer");
      return body.members.filter(
        (m): m is Member =>
          typeof (m as Member).user_id === "string" && typeof (m as Member).profession === "string",
      );
    },
    trustedServers: d.peerServers,
    log,
    metrics: d.metrics,
  });
  const service = createChannelService({ channels, publisher, reconciler, audit });

  let running: Promise<unknown> = Promise.resolve();
  const cycle = (why: string): void => {
    running = running
      .then(() => reconciler.run())
      .then((r) => {
        if (r.invited || r.removed) log.info({ ...r, why }, "channels reconciled");
      })
      .catch((err: unknown) => {
        log.warn({ err }, "channel reconciliation failed");
      });
  };
  let seen = d.clinicians.version();
  const periodic = setInterval(() => {
    cycle("periodic");
  }, d.reconcileMs ?? RECONCILE_MS);
  // Newly verified (or revoked) clinicians of this organisation: the next cycle starts now.
  const watch = setInterval(() => {
    const v = d.clinicians.version();
    if (v === seen) return;
    seen = v;
    cycle("verification changed");
  }, VERIFIED_POLL_MS);
  periodic.unref();
  watch.unref();

  return {
    botUserId,
    service,
    onEvents: (events: readonly AppserviceEvent[]) => service.onEvents(events),
    peerRoutes: channelPeerRoutes(localMembers),
    async stop(): Promise<void> {
      clearInterval(periodic);
      clearInterval(watch);
      await running;
      if (bot) (await bot.catch(() => undefined))?.stop();
    },
  };
}
export type Channels = Awaited<ReturnType<typeof startChannels>>;
