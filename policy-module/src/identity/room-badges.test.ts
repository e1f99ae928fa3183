import { describe, expect, it } from "vitest";
import { joinedServers } from "./room-badges.ts";

// Which remote join re-sends the organisation's badges (room-badges.ts): a server's first member
// in a room, not each of them (in a channel of 2,800 that was one re-send of every local badge
// per remote member: quadratic, bench/broadcast.ts).
describe("a server's first join in a room", () => {
  it("is its first member's join only; a profile change or a second member is not", () => {
    const s = joinedServers();
    expect(s.firstJoin("!r", "@b1:b.example")).toBe(true);
    expect(s.firstJoin("!r", "@b1:b.example")).toBe(false); // a profile change
    expect(s.firstJoin("!r", "@b2:b.example")).toBe(false);
    expect(s.firstJoin("!r", "@c1:c.example")).toBe(true);
    expect(s.firstJoin("!other", "@b1:b.example")).toBe(true);
  });

  it("is again once every member of the server seen here left", () => {
    const s = joinedServers();
    s.firstJoin("!r", "@b1:b.example");
    s.firstJoin("!r", "@b2:b.example");
    s.left("!r", "@b1:b.example");
    expect(s.firstJoin("!r", "@b3:b.example")).toBe(false); // b2 is still there
    s.left("!r", "@b2:b.example");
    s.left("!r", "@b3:b.example");
    expect(s.firstJoin("!r", "@b1:b.example")).toBe(true);
  });

  it("takes the server from the whole user ID (a port is part of it)", () => {
    const s = joinedServers();
    expect(s.firstJoin("!r", "@b1:localhost:8448")).toBe(true);
    expect(s.firstJoin("!r", "@b2:localhost:8449")).toBe(true);
    expect(s.firstJoin("!r", "@b3:localhost:8448")).toBe(false);
  });
});
