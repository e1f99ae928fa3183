import { describe, expect, it } from "vitest";
import type { GroupEntry } from "./groups-store.ts";
import { createGroupRules } from "./rules.ts";

const group = (over: Partial<GroupEntry>): GroupEntry => ({
  room_id: "!g:a.example",
  listed: true,
  scope: "network",
  professions: [],
  join_rule: "knock",
  name: "Ward talk",
  members: 3,
  ...over,
});
const rooms = new Map<string, GroupEntry>([
  [
    "!pharma:a.example",
    group({ room_id: "!pharma:a.example", professions: ["pharmacist"], name: "Pharmacists" }),
  ],
  ["!open:a.example", group({ room_id: "!open:a.example" })],
  ["!own:a.example", group({ room_id: "!own:a.example", scope: "organisation" })],
  ["!invite-only:a.example", group({ room_id: "!invite-only:a.example", join_rule: "invite" })],
  ["!plain:a.example", group({ room_id: "!plain:a.example", listed: false })],
]);
const professions: Record<string, string> = {
  "@ph:b.example": "pharmacist",
  "@gp:b.example": "general practitioner",
  "@ph:a.example": "pharmacist",
};
const rules = createGroupRules({
  serverName: "a.example",
  botUserId: "@medmesh:a.example",
  listingOf: (roomId) => {
    const entry = rooms.get(roomId);
    return Promise.resolve(entry ? { known: true, entry } : { known: roomId.endsWith(":a.example") });
  },
  professionOf: (u) => Promise.resolve(professions[u]),
});
const decide = async (user_id: string, room_id: string, membership: "knock" | "join" | "invite") => {
  const d = await rules.membership({ user_id, room_id, membership });
  return { allowed: d.allowed, reason: d.allowed ? undefined : d.reason };
};

describe("group rules", () => {
  it("knocks: a listed, knockable group, a verified clinician of its scope and professions", async () => {
    expect(await decide("@ph:b.example", "!pharma:a.example", "knock")).toEqual({
      allowed: true,
      reason: undefined,
    });
    expect(await decide("@gp:b.example", "!pharma:a.example", "knock")).toEqual({
      allowed: false,
      reason: '"Pharmacists" is for pharmacist only; @gp:b.example is registered as general practitioner',
    });
    expect((await decide("@anon:b.example", "!open:a.example", "knock")).reason).toMatch(
      /Only verified clinicians/,
    );
    expect((await decide("@ph:b.example", "!own:a.example", "knock")).reason).toMatch(/own organisation's/);
    expect((await decide("@ph:a.example", "!own:a.example", "knock")).allowed).toBe(true);
    for (const room of ["!invite-only:a.example", "!plain:a.example", "!unknown:a.example"]) {
      expect((await decide("@ph:b.example", room, "knock")).reason).toMatch(
        /not listed in the group directory/,
      );
    }
  });

  it("joins and invites: only a profession limit applies; rooms this server does not know are not its to decide", async () => {
    expect((await decide("@gp:b.example", "!pharma:a.example", "invite")).allowed).toBe(false);
    expect((await decide("@gp:b.example", "!pharma:a.example", "join")).allowed).toBe(false);
    expect((await decide("@anon:b.example", "!pharma:a.example", "join")).reason).toMatch(/not verified/);
    expect((await decide("@anon:b.example", "!open:a.example", "join")).allowed).toBe(true);
    expect((await decide("@anon:b.example", "!plain:a.example", "invite")).allowed).toBe(true);
    expect((await decide("@gp:b.example", "!elsewhere:c.example", "knock")).allowed).toBe(true);
    expect((await decide("@medmesh:a.example", "!pharma:a.example", "invite")).allowed).toBe(true);
  });
});
