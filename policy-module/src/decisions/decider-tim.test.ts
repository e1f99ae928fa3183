import { describe, expect, it } from "vitest";
import { createDecider } from "./decider.ts";
import type { Profile } from "../rooms/profile.ts";

const permissionChecks: [string, string][] = [];
const OFF_THE_LIST = "gone.example";
const deciderFor = (profile: Profile, serverName: string) =>
  createDecider({
    serverName,
    profile,
    trust: { isTrusted: (server) => server !== OFF_THE_LIST },
    invites: {
      check: (inviter, invitee) => {
        permissionChecks.push([inviter, invitee]);
        return Promise.resolve({ allowed: true }); // as if the invitee's permission config allow-lists
      },
      changed: () => undefined,
    },
    verification: { isVerified: () => Promise.resolve(true) },
    rooms: { allow_public_rooms: false },
    groups: { membership: () => Promise.resolve({ allowed: true }) },
    accounts: { deactivated: () => Promise.resolve() },
  });
const pro = deciderFor("tim-pro", "pro.example");
const epa = deciderFor("tim-epa", "epa.example");
const medmesh = deciderFor("medmesh", "mm.example");
const room = { sender: "@x:pro.example", room_id: "!r:pro.example", state_key: "" };

describe("decider with a TI-M profile", () => {
  it("refuses ePA→ePA invites before the invitee's permission config is read", async () => {
    permissionChecks.length = 0;
    const invite = (inviter: string, invitee: string) =>
      epa.invite({ inviter, invitee, room_id: "!r:epa.example", via: "local" });
    expect(await invite("@p1:epa.example", "@p2:epa.example")).toEqual({
      allowed: false,
      reason: "Cannot invite @p2:epa.example: insured persons cannot invite each other",
    });
    expect(permissionChecks).toEqual([]);
    // MedMesh's bot is no insured person: rooms created through the proxy invite it
    expect(await invite("@p1:epa.example", "@medmesh:epa.example")).toEqual({ allowed: true });
    expect(await invite("@p1:epa.example", "@doc:pro.example")).toEqual({ allowed: true });
  });

  it("createRoom: TI-M's encryption and public-room rules replace MedMesh's join-rule rule", async () => {
    const create = (d: typeof pro, config: Record<string, unknown>) =>
      d.createRoom({ user_id: "@x:pro.example", config });
    const publicRoom = { preset: "public_chat", creation_content: { "m.federate": false } };
    expect(await create(pro, publicRoom)).toEqual({ allowed: true });
    expect((await create(medmesh, publicRoom)).allowed).toBe(false); // MedMesh: no public rooms
    expect((await create(epa, publicRoom)).allowed).toBe(false);
    expect(
      (
        await create(pro, {
          preset: "public_chat",
          initial_state: [{ type: "m.room.join_rules", content: { join_rule: "invite" } }],
        })
      ).allowed,
    ).toBe(false);
    // the room rules still apply: no world_readable history on any profile
    expect(
      (
        await create(pro, {
          initial_state: [
            { type: "m.room.history_visibility", content: { history_visibility: "world_readable" } },
          ],
        })
      ).allowed,
    ).toBe(false);
  });

  it("join rule public later: only in a room created public", () => {
    const joinRules = (room_federates: boolean, room_encrypted: boolean) =>
      pro.stateEvent({
        ...room,
        type: "m.room.join_rules",
        content: { join_rule: "public" },
        room_federates,
        room_encrypted,
      });
    expect(joinRules(false, false)).toEqual({ allowed: true });
    expect(joinRules(true, true).allowed).toBe(false);
    expect(
      pro.stateEvent({ ...room, type: "m.room.join_rules", content: { join_rule: "public" } }).allowed,
    ).toBe(false);
    expect(
      medmesh.stateEvent({ ...room, type: "m.room.join_rules", content: { join_rule: "public" } }).allowed,
    ).toBe(false);
  });

  it("encryption added later: refused only in a room created public (m.federate false, unencrypted)", () => {
    const encryption = (facts: { room_federates?: boolean; room_encrypted?: boolean }) =>
      pro.stateEvent({
        ...room,
        type: "m.room.encryption",
        content: { algorithm: "m.megolm.v1.aes-sha2" },
        ...facts,
      });
    expect(encryption({ room_federates: false, room_encrypted: false })).toEqual({
      allowed: false,
      reason:
        "Public rooms on this TI-Messenger server are not end-to-end encrypted: encryption cannot be " +
        "added to this room (m.federate false) later",
    });
    expect(encryption({ room_federates: true, room_encrypted: false })).toEqual({ allowed: true });
    // a non-federating room that is already encrypted is no public room
    expect(encryption({ room_federates: false, room_encrypted: true })).toEqual({ allowed: true });
    // createRoom's own initial state: the room is not known yet (checkTimCreateRoom decides)
    expect(encryption({})).toEqual({ allowed: true });
    // MedMesh's profile has no public rooms: only the algorithm rule applies
    expect(
      medmesh.stateEvent({
        ...room,
        type: "m.room.encryption",
        content: { algorithm: "m.megolm.v1.aes-sha2" },
        room_federates: false,
        room_encrypted: false,
      }),
    ).toEqual({ allowed: true });
    // the algorithm rule still applies in TI-M rooms
    expect(
      pro.stateEvent({
        ...room,
        type: "m.room.encryption",
        content: { algorithm: "m.olm.v1" },
        room_federates: true,
        room_encrypted: true,
      }).allowed,
    ).toBe(false);
  });

  it("a message to a room with a member's server off the trust list is refused, naming the server", () => {
    const send = (servers: string[]) =>
      pro.message({ sender: "@x:pro.example", room_id: "!r:pro.example", servers });
    expect(send(["epa.example", "other.example"])).toEqual({ allowed: true });
    expect(send(["epa.example", OFF_THE_LIST])).toEqual({
      allowed: false,
      reason:
        "Cannot send to !r:pro.example: gone.example, a member's server, is not an organisation on " +
        "this network's trust list, so the message would not reach it",
    });
    // this server itself needs no trust-list entry
    expect(
      pro.message({ sender: "@x:pro.example", room_id: "!r:pro.example", servers: ["pro.example"] }),
    ).toEqual({ allowed: true });
  });

  it("insured persons list no rooms in the directory; the defaults come only with a TI-M profile", async () => {
    expect(await epa.publish({ user_id: "@p:epa.example", room_id: "!r:epa.example" })).toMatchObject({
      allowed: false,
    });
    expect(await pro.publish({ user_id: "@d:pro.example", room_id: "!r:pro.example" })).toEqual({
      allowed: true,
    });
    expect(medmesh.roomDefaults({ user_id: "@x:mm.example", config: {} })).toBeUndefined();
    expect(pro.roomDefaults({ user_id: "@x:pro.example", config: {} })?.creation_content).toEqual({
      type: "de.gematik.tim.roomtype.default.v1",
    });
  });
});
