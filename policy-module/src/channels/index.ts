import { createAuditLog, type AppserviceEvent, type Store, type SynapseAdmin } from "@medmesh/common";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { BotHost, HostedBot } from "../bot/index.ts";
import type { PeerClient } from "../directory/index.ts";
import { createPublisher } from "./publisher.ts";
import { createReconciler, type Member } from "./reconciler.ts";
import { CHANNEL_MEMBERS_PATH, channelPeerRoutes } from "./routes.ts";
import { createChannelService } from "./service.ts";
import { channelsStore, type Channel } from "./store.ts";

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
  /** The channel bot's device runs on the bots' leader: channels are made and posted to there. */
  bots: BotHost;
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
  // Registered where there are channels, or at the first use (made on the bots' leader).
  let hosted: HostedBot | undefined;
  const register = (): HostedBot =>
    (hosted ??= d.bots.add(botUserId, () => ({
      homeserverUrl: d.homeserverUrl,
      asToken: d.asToken,
      displayName: "MedMesh channels",
      ignoredMembers: [],
      admin: d.admin,
      log,
      metrics: d.metrics,
      // Members cannot post in channels; nothing the bot is sent is answered.
      onMessage: () => Promise.resolve(undefined),
    })));
  const publisher = createPublisher({
    // Elsewhere than on the bots' leader: LeadershipLost (M_UNAVAILABLE), naming the job.
    client: async () => (await register().running()).client,
    botUserId,
    roomAdminBotUserId: d.roomAdminBotUserId,
    channels,
    log,
  });
  // The bot runs where there are channels; an organisation without any starts it at the first.
  if ((await channels.all()).length > 0) register();
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
  // What speaks or reads as the channel bot runs on the bots' leader: sent there from a standby.
  const local = createChannelService({ channels, publisher, reconciler, audit });
  const service: typeof local = {
    ...local,
    create: d.bots.onLeader(
      "channels.create",
      (body: unknown, actor: string) => local.create(body, actor),
      (json) => {
        const c = json as Channel & { invited: number; created_at: string };
        return { ...c, created_at: new Date(c.created_at) };
      },
    ),
    post: d.bots.onLeader("channels.post", (roomId: string, body: unknown, actor: string, key: string) =>
      local.post(roomId, body, actor, key),
    ),
    stats: d.bots.onLeader("channels.stats", (roomId: string, eventId: string) =>
      local.stats(roomId, eventId),
    ),
    urgent: d.bots.onLeader("channels.urgent", (roomId: string) => local.urgent(roomId)),
    reconcile: d.bots.onLeader("channels.reconcile", () => local.reconcile()),
  };

  let running: Promise<unknown> = Promise.resolve();
  const cycle = (why: string): void => {
    // The reconciler invites and removes through the channel bot: where it runs.
    if (!d.bots.leading()) return;
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
    },
  };
}
export type Channels = Awaited<ReturnType<typeof startChannels>>;
