import { describe, expect, it } from "vitest";
import { createDecider } from "./decider.ts";

const checks: [string, string][] = [];
const deactivations: [string, boolean][] = [];
const decider = createDecider({
  serverName: "a.example",
  trust: { isTrusted: (s) => s === "b.example" },
  invites: {
    check: (inviter, invitee) => {
      checks.push([inviter, invitee]);
      return Promise.resolve(
        invitee === "@blocker:a.example" ? { allowed: false, reason: "blocked" } : { allowed: true },
      );
    },
    changed: () => undefined,
  },
  verification: { isVerified: (u) => Promise.resolve(u === "@doc:a.example") },
  rooms: { allow_public_rooms: false },
  groups: {
    membership: (q) =>
      Promise.resolve(
        q.room_id === "!pharmacists:a.example" && q.user_id !== "@pharmacist:b.example"
          ? { allowed: false, reason: "for pharmacists only" }
          : { allowed: true },
      ),
  },
  accounts: {
    deactivated: (u, byAdmin) => {
      deactivations.push([u, byAdmin]);
      return Promise.resolve();
    },
  },
});

describe("decider", () => {
  it("invites: trust list first, then the local invitee's permissions; remote invitees are theirs", async () => {
    const invite = (inviter: string, invitee: string) =>
      decider.invite({ inviter, invitee, room_id: "!r:a.example", via: "local" });
    expect(await invite("@x:a.example", "@y:c.example")).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(
        /c\.example is not an organisation on this network's trust list/,
      ) as unknown,
    });
    expect(await invite("@x:c.example", "@y:a.example")).toMatchObject({ allowed: false });
    checks.length = 0;
    expect(await invite("@x:a.example", "@y:b.example")).toEqual({ allowed: true });
    expect(checks).toEqual([]);
    expect(await invite("@x:a.example", "@blocker:a.example")).toEqual({ allowed: false, reason: "blocked" });
  });

  it("createRoom: 3PID invites, initial state, preset, directory listing and every invitee", async () => {
    const create = (config: Record<string, unknown>, user_id = "@x:a.example") =>
      decider.createRoom({ user_id, config });
    expect((await create({ invite_3pid: [{ medium: "email" }] })).allowed).toBe(false);
    expect(decider.threepidInvite({ inviter: "@x:a.example", room_id: "!r:a.example" }).allowed).toBe(false);
    expect(
      (await create({ initial_state: [{ type: "m.room.encryption", content: { algorithm: "x" } }] })).allowed,
    ).toBe(false);
    expect((await create({ preset: "public_chat" })).allowed).toBe(false);
    // initial_state overrides the preset's join rule, as in Synapse
    expect(
      (
        await create({
          preset: "public_chat",
          initial_state: [{ type: "m.room.join_rules", content: { join_rule: "knock" } }],
        })
      ).allowed,
    ).toBe(true);
    expect((await create({ visibility: "public", preset: "private_chat" })).allowed).toBe(false);
    expect((await create({ visibility: "public", preset: "private_chat" }, "@doc:a.example")).allowed).toBe(
      true,
    );
    expect(await create({ invite: ["@ok:a.example", "@blocker:a.example"] })).toEqual({
      allowed: false,
      reason: "blocked",
    });
    expect(await create({ invite: ["@ok:a.example"], preset: "private_chat" })).toEqual({ allowed: true });
  });

  it("joins: a room ID naming an untrusted server is refused; version 12 IDs name none; groups decide theirs", async () => {
    const join = async (room_id: string, user_id = "@x:a.example") =>
      (await decider.join({ user_id, room_id, is_invited: false, membership: "join" })).allowed;
    expect(await join("!abc:c.example")).toBe(false);
    expect(await join("!abc:b.example")).toBe(true);
    expect(await join("!abc:a.example")).toBe(true);
    expect(await join("!opaqueRoomIdOfVersion12")).toBe(true);
    expect(await join("!pharmacists:a.example")).toBe(false);
    expect(await join("!pharmacists:a.example", "@pharmacist:b.example")).toBe(true);
    // The same rule for an invite into the group, a knock, and another server's join.
    const invite = (invitee: string) =>
      decider.invite({ inviter: "@x:a.example", invitee, room_id: "!pharmacists:a.example", via: "local" });
    expect(await invite("@gp:b.example")).toEqual({ allowed: false, reason: "for pharmacists only" });
    expect((await invite("@pharmacist:b.example")).allowed).toBe(true);
    const knock = await decider.join({
      user_id: "@gp:b.example",
      room_id: "!pharmacists:a.example",
      is_invited: false,
      membership: "knock",
    });
    expect(knock.allowed).toBe(false);
    const listing = (content: Record<string, unknown>) =>
      decider.stateEvent({
        type: "org.medmesh.group",
        state_key: "",
        sender: "@x:a.example",
        room_id: "!r:a.example",
        content,
      });
    expect(listing({ listed: true, professions: ["pharmacist"] })).toEqual({ allowed: true });
    expect(listing({ listed: "yes" })).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(/listed/) as unknown,
    });
    expect(listing({ listed: true, scope: "world" }).allowed).toBe(false);
  });

  it("account status: only this organisation's deactivations act; the answer is always allowed", async () => {
    const report = (user_id: string, deactivated: boolean, by_admin = false) =>
      decider.accountStatus({ user_id, deactivated, by_admin });
    expect(await report("@ann:a.example", true)).toEqual({ allowed: true });
    expect(await report("@carl:a.example", true, true)).toEqual({ allowed: true });
    expect(await report("@ann:a.example", false)).toEqual({ allowed: true }); // reactivated: nothing
    expect(await report("@bob:b.example", true)).toEqual({ allowed: true }); // B's to revoke
    expect(deactivations).toEqual([
      ["@ann:a.example", false],
      ["@carl:a.example", true],
    ]);
  });
});
