import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";
import { WorkerRoutingSchema } from "./config.ts";
import { createWorkerRouter, type RouteRequest } from "./worker-router.ts";

const W = ["http://127.0.0.1:1", "http://127.0.0.1:2", "http://127.0.0.1:3"];
const router = createWorkerRouter(
  WorkerRoutingSchema.parse([
    {
      name: "typing",
      listener: "client",
      pattern: "^/_matrix/client/v3/rooms/.*/typing",
      upstreams: [W[2]],
      balance: "round_robin",
    },
    {
      name: "sync",
      listener: "client",
      pattern: "^/_matrix/client/(r0|v3)/sync$",
      upstreams: W,
      balance: "user",
    },
    {
      name: "send",
      listener: "client",
      pattern: "^/_matrix/client/v3/rooms/.*/send",
      upstreams: W,
      balance: "room",
    },
    {
      name: "reads",
      listener: "client",
      methods: ["GET"],
      pattern: "^/_matrix/client/v3/joined_rooms$",
      upstreams: W,
      balance: "round_robin",
    },
    {
      name: "txn",
      listener: "federation",
      pattern: "^/_matrix/federation/v1/send/",
      upstreams: W,
      balance: "origin",
    },
  ]),
);
const req = (headers: Record<string, string> = {}) => ({ headers }) as unknown as IncomingMessage;
const pick = (r: Partial<RouteRequest> & { rawPath: string }) =>
  router.pick({ listener: "client", method: "GET", req: req(), ...r })?.upstream.port;

describe("worker router", () => {
  it("keeps a user's /sync on one worker, and spreads users over the workers", () => {
    const users = Array.from({ length: 30 }, (_, i) => `@u${String(i)}:example.org`);
    const first = users.map((userId) => pick({ rawPath: "/_matrix/client/v3/sync", userId }));
    for (let round = 0; round < 3; round++) {
      expect(users.map((userId) => pick({ rawPath: "/_matrix/client/v3/sync", userId }))).toEqual(first);
    }
    expect(new Set(first).size).toBe(3);
  });

  it("spreads stateless reads round robin, only for the listed methods", () => {
    const seen = Array.from({ length: 6 }, () => pick({ rawPath: "/_matrix/client/v3/joined_rooms" }));
    expect(seen).toEqual(["1", "2", "3", "1", "2", "3"]);
    expect(pick({ rawPath: "/_matrix/client/v3/joined_rooms", method: "POST" })).toBeUndefined();
  });

  it("keeps a room's sends on one worker and a server's transactions on one", () => {
    const room = (id: string) =>
      `/_matrix/client/v3/rooms/${id}/send/m.room.message/t${String(Math.random())}`;
    const a = pick({ rawPath: room("!a:x"), method: "PUT" });
    for (let i = 0; i < 5; i++) expect(pick({ rawPath: room("!a:x"), method: "PUT" })).toBe(a);
    const fromPeer = (origin: string) =>
      router.pick({
        listener: "federation",
        method: "PUT",
        rawPath: `/_matrix/federation/v1/send/${String(Math.random())}`,
        req: req({ authorization: `X-Matrix origin="${origin}",key="ed25519:a",sig="s"` }),
      })?.upstream.port;
    const b = fromPeer("peer.example");
    for (let i = 0; i < 5; i++) expect(fromPeer("peer.example")).toBe(b);
  });

  it("takes the first matching route, and leaves the rest (and the other listener) to the main process", () => {
    expect(pick({ rawPath: "/_matrix/client/v3/rooms/!a:x/typing/@u:x", method: "PUT" })).toBe("3");
    expect(pick({ rawPath: "/_matrix/client/v3/createRoom", method: "POST" })).toBeUndefined();
    expect(
      router.pick({ listener: "federation", method: "GET", rawPath: "/_matrix/client/v3/sync", req: req() }),
    ).toBeUndefined();
  });
});
