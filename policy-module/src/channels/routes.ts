import { randomUUID } from "node:crypto";
import { ApiError, asyncHandler } from "@medmesh/common";
import type { Express } from "express";
import type { PeerRoute } from "../peer-api.ts";
import type { ChannelService } from "./service.ts";
import type { Channel } from "./store.ts";

export const CHANNEL_MEMBERS_PATH = "/_medmesh/channels/v1/members";
const ADMIN = "/_medmesh/admin/v1/channels";

export const channelJson = (c: Channel) => ({ ...c, created_at: c.created_at.toISOString() });

/** The channels' admin API on the internal listener (operators, tests; the console has its own routes). */
export function mountChannelsAdmin(app: Express, channels: () => ChannelService | undefined): void {
  const svc = (): ChannelService => {
    const c = channels();
    if (!c) throw new ApiError("M_UNAVAILABLE", "channels are not running (no proxy role)");
    return c;
  };
  const actor = "admin-token";
  app.get(
    ADMIN,
    asyncHandler(async (_req, res) => {
      res.json({ channels: (await svc().list()).map(channelJson) });
    }),
  );
  app.post(
    ADMIN,
    asyncHandler(async (req, res) => {
      const c = await svc().create(req.body, actor);
      res.status(201).json({ ...channelJson(c), invited: c.invited });
    }),
  );
  app.post(
    `${ADMIN}/reconcile`,
    asyncHandler(async (_req, res) => {
      res.json(await svc().reconcile());
    }),
  );
  app.post(
    `${ADMIN}/:roomId/posts`,
    asyncHandler(async (req, res) => {
      const key = req.get("idempotency-key") ?? randomUUID();
      res.json(await svc().post(String(req.params.roomId), req.body, actor, key));
    }),
  );
  app.get(
    `${ADMIN}/:roomId/urgent`,
    asyncHandler(async (req, res) => {
      res.json({ posts: await svc().urgent(String(req.params.roomId)) });
    }),
  );
  app.get(
    `${ADMIN}/:roomId/posts/:eventId`,
    asyncHandler(async (req, res) => {
      res.json(await svc().stats(String(req.params.roomId), String(req.params.eventId)));
    }),
  );
}

/**
 * Peer API: this organisation's verified clinicians (of the professions asked) for another
 * organisation's network channel, which invites them. The same people its FHIR directory shows.
 */
export function channelPeerRoutes(members: () => { user_id: string; profession: string }[]): PeerRoute[] {
  return [
    {
      pattern: new RegExp(`^${CHANNEL_MEMBERS_PATH}$`),
      handle: (ctx) => {
        const asked = (ctx.url.searchParams.get("professions") ?? "").split(",").filter(Boolean);
        const found = members().filter((m) => asked.length === 0 || asked.includes(m.profession));
        return { status: 200, body: { members: found.slice(0, 50_000) } };
      },
    },
  ];
}
