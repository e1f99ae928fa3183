import { describe, expect, it } from "vitest";
import type { BridgeCrypto } from "./crypto.ts";
import type { Ghosts } from "./ghosts.ts";
import { MatrixSide } from "./matrix.ts";

const ROOM = "!portal:hospital-a.example";
const GHOST = "@bridge_refmsg_anna:hospital-a.example";

describe("MatrixSide: a portal's members", () => {
  it("are asked for once, and again after each membership change in the room", async () => {
    const asked: string[] = [];
    let members = ["@alice:hospital-a.example", GHOST];
    const ghosts = {
      as: () => (_method: string, path: string) => {
        asked.push(path);
        return Promise.resolve({
          chunk: members.map((m) => ({ state_key: m, content: { membership: "join" } })),
        });
      },
    } as unknown as Ghosts;
    const matrix = new MatrixSide(ghosts, {} as unknown as BridgeCrypto, {
      url: "http://127.0.0.1:1",
      asToken: "t",
    });
    const membersAsked = () => asked.filter((p) => p.includes("/members")).length;

    expect(await matrix.members(GHOST, ROOM)).toEqual(["@alice:hospital-a.example", GHOST]);
    await matrix.members(GHOST, ROOM);
    expect(membersAsked()).toBe(1);

    // The bridge's own invite changes the room's members.
    await matrix.call(GHOST, "POST", `/_matrix/client/v3/rooms/${encodeURIComponent(ROOM)}/invite`, {});
    members = [...members, "@bob:hospital-a.example"];
    expect(await matrix.members(GHOST, ROOM)).toContain("@bob:hospital-a.example");
    expect(membersAsked()).toBe(2);

    // So does a member event Synapse sends; another room's does not.
    matrix.membershipChanged("!other:hospital-a.example");
    await matrix.members(GHOST, ROOM);
    expect(membersAsked()).toBe(2);
    matrix.membershipChanged(ROOM);
    members = members.filter((m) => m !== "@alice:hospital-a.example");
    expect(await matrix.members(GHOST, ROOM)).not.toContain("@alice:hospital-a.example");
    expect(membersAsked()).toBe(3);
  });
});
