import { ApiError, type AppserviceEvent, type AuditLog } from "@medmesh/common";
import type { Publisher } from "./publisher.ts";
import type { Reconciler } from "./reconciler.ts";
import { ChannelSpecSchema, PostSchema, specProblem } from "./spec.ts";
import type { Channel, ChannelsStore } from "./store.ts";

/** What the admin API and the console do with channels: one implementation for both. */
export function createChannelService(d: {
  channels: ChannelsStore;
  publisher: Publisher;
  reconciler: Reconciler;
  audit: () => AuditLog | undefined;
}) {
  const channelOf = async (roomId: string): Promise<Channel> => {
    const c = await d.channels.get(roomId);
    if (!c) throw new ApiError("M_NOT_FOUND", `${roomId} is not one of this organisation's channels`);
    return c;
  };
  return {
    list: () => d.channels.all(),
    get: channelOf,
    /** Creates the room, records it and invites its members (the first reconciliation). */
    async create(body: unknown, actor: string): Promise<Channel & { invited: number }> {
      const parsed = ChannelSpecSchema.safeParse(body);
      if (!parsed.success) throw new ApiError("M_INVALID_PARAM", specProblem(parsed.error));
      const roomId = await d.publisher.createRoom(parsed.data);
      const channel: Channel = { ...parsed.data, room_id: roomId, created_by: actor, created_at: new Date() };
      await d.channels.add(channel);
      await d.audit()?.record({
        actor,
        action: "channel.create",
        object: roomId,
        outcome: "success",
        details: {
          scope: channel.scope,
          mandatory: channel.mandatory,
          publishers: channel.publishers.length,
        },
      });
      const first = await d.reconciler.run(roomId);
      return { ...channel, invited: first.invited };
    },
    /** A post from the console, encrypted by the channel bot; `key` makes a retry idempotent. */
    async post(roomId: string, body: unknown, actor: string, key: string): Promise<{ event_id: string }> {
      const c = await channelOf(roomId);
      const parsed = PostSchema.safeParse(body);
      if (!parsed.success) throw new ApiError("M_INVALID_PARAM", specProblem(parsed.error));
      const eventId = await d.publisher.post(c.room_id, parsed.data.body, parsed.data.urgent, key);
      await d.channels.addPost({
        event_id: eventId,
        room_id: c.room_id,
        sender: actor,
        urgent: parsed.data.urgent,
        sent_at: new Date(),
      });
      await d.audit()?.record({
        actor,
        action: parsed.data.urgent ? "channel.post.urgent" : "channel.post",
        object: `${c.room_id}/${eventId}`,
        outcome: "success",
      });
      return { event_id: eventId };
    },
    async stats(roomId: string, eventId: string) {
      const c = await channelOf(roomId);
      return d.publisher.stats(c.room_id, eventId, c.publishers);
    },
    async urgent(roomId: string) {
      const c = await channelOf(roomId);
      const posts = await d.channels.urgentPosts(c.room_id);
      return Promise.all(
        posts.map(async (p) => ({
          ...(await d.publisher.stats(c.room_id, p.event_id, c.publishers)),
          sent_at: p.sent_at.toISOString(),
          sender: p.sender,
        })),
      );
    },
    reconcile: () => d.reconciler.run(),
    onEvents: (events: readonly AppserviceEvent[]) => d.reconciler.onEvents(events),
  };
}
export type ChannelService = ReturnType<typeof createChannelService>;
