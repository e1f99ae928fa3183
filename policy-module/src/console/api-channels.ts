import { randomUUID } from "node:crypto";
import type { ChannelService } from "../channels/index.ts";
import { channelJson } from "../channels/index.ts";
import { Refusal, type Route } from "../proxy/index.ts";
import { consoleRoute, json, type ApiDeps } from "./http.ts";

/**
 * The channels page's API (docs/channels.md): the same service as the admin API, with the console
 * user as the actor the audit log names.
 */
export function channelRoutes(d: ApiDeps & { channels: () => ChannelService | undefined }): Route[] {
  const svc = (): ChannelService => {
    const c = d.channels();
    if (!c) throw new Refusal(503, "M_UNAVAILABLE", "Channels are not running on this server");
    return c;
  };
  return [
    consoleRoute(d, "GET", "/channels", "channels.manage", async () =>
      json({ channels: (await svc().list()).map(channelJson) }),
    ),
    consoleRoute(d, "POST", "/channels", "channels.manage", async (ctx, actor) => {
      const c = await svc().create(await ctx.json(64 * 1024), actor.userId);
      return json({ ...channelJson(c), invited: c.invited }, 201);
    }),
    consoleRoute(d, "POST", "/channels/{}/posts", "channels.manage", async (ctx, actor, [roomId = ""]) => {
      const key = ctx.req.headers["idempotency-key"];
      const body = await ctx.json(64 * 1024);
      return json(await svc().post(roomId, body, actor.userId, typeof key === "string" ? key : randomUUID()));
    }),
    consoleRoute(d, "GET", "/channels/{}/urgent", "channels.manage", async (_ctx, _actor, [roomId = ""]) =>
      json({ posts: await svc().urgent(roomId) }),
    ),
  ];
}
