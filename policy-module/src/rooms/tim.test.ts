import { describe, expect, it } from "vitest";
import { insuredPerson } from "./profile.ts";
import {
  checkTimCreateRoom,
  checkTimJoinRule,
  startsEncrypted,
  timRoomDefaults,
  TIM_ROOM_NAME,
  TIM_ROOM_TOPIC,
  TIM_ROOM_TYPE,
} from "./tim.ts";

const ENCRYPTION = {
  type: "m.room.encryption",
  state_key: "",
  content: { algorithm: "m.megolm.v1.aes-sha2" },
};
const joinRule = (join_rule: string) => ({
  type: "m.room.join_rules",
  state_key: "",
  content: { join_rule },
});
const stateTypes = (c: Record<string, unknown>) =>
  (c.initial_state as { type: string; content: unknown }[]).map((e) => [e.type, e.content]);

describe("TI-M room defaults", () => {
  it("sets the TI-M room type, history from the invitation, join by invitation and TI-M's name and topic", () => {
    const out = timRoomDefaults({ preset: "private_chat", name: "Ward 3", topic: "handover" });
    expect(out.creation_content).toEqual({ type: TIM_ROOM_TYPE });
    expect(stateTypes(out)).toEqual([
      ["m.room.history_visibility", { history_visibility: "invited" }],
      ["m.room.join_rules", { join_rule: "invite" }],
      [TIM_ROOM_NAME, { name: "Ward 3" }],
      [TIM_ROOM_TOPIC, { topic: "handover" }],
    ]);
  });

  it("keeps what the client set, and makes a public room non-federating", () => {
    const out = timRoomDefaults({
      preset: "public_chat",
      creation_content: { type: "m.space" },
      initial_state: [{ type: "m.room.history_visibility", content: { history_visibility: "joined" } }],
    });
    expect(out.creation_content).toEqual({ type: "m.space", "m.federate": false });
    expect(stateTypes(out)).toEqual([["m.room.history_visibility", { history_visibility: "joined" }]]);
    // a client's explicit m.federate stays (and is then refused by checkTimCreateRoom)
    expect(
      timRoomDefaults({ preset: "public_chat", creation_content: { "m.federate": true } }).creation_content,
    ).toEqual({ type: TIM_ROOM_TYPE, "m.federate": true });
    // name and topic from initial_state count as well
    const fromState = timRoomDefaults({
      initial_state: [{ type: "m.room.name", content: { name: "N" } }],
    });
    expect(stateTypes(fromState)).toContainEqual([TIM_ROOM_NAME, { name: "N" }]);
  });
});

describe("TI-M room rules", () => {
  it("refuses a private room without encryption; Synapse encrypts the private presets", () => {
    expect(checkTimCreateRoom({ preset: "private_chat" }, "tim-pro")).toEqual({ allowed: true });
    expect(checkTimCreateRoom({}, "tim-pro")).toEqual({ allowed: true }); // default preset private_chat
    expect(
      checkTimCreateRoom({ preset: "public_chat", initial_state: [joinRule("invite")] }, "tim-pro"),
    ).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(/Private rooms .* are end-to-end encrypted/) as unknown,
    });
    expect(
      checkTimCreateRoom(
        { preset: "public_chat", initial_state: [joinRule("invite"), ENCRYPTION] },
        "tim-pro",
      ),
    ).toEqual({ allowed: true });
    // an upgrade gets no preset: only the state it copies counts
    expect(startsEncrypted({ creation_content: { predecessor: { room_id: "!old" } } })).toBe(false);
    expect(
      checkTimCreateRoom({ creation_content: { predecessor: {} }, initial_state: [ENCRYPTION] }, "tim-pro"),
    ).toEqual({
      allowed: true,
    });
  });

  it("allows a public room only unencrypted and non-federating, and none for insured persons", () => {
    const nonFederating = { preset: "public_chat", creation_content: { "m.federate": false } };
    expect(checkTimCreateRoom(nonFederating, "tim-pro")).toEqual({ allowed: true });
    expect(checkTimCreateRoom({ preset: "public_chat" }, "tim-pro")).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(/do not federate/) as unknown,
    });
    expect(checkTimCreateRoom({ ...nonFederating, initial_state: [ENCRYPTION] }, "tim-pro")).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(/not end-to-end encrypted/) as unknown,
    });
    expect(
      checkTimCreateRoom(
        {
          preset: "private_chat",
          creation_content: { "m.federate": false },
          initial_state: [joinRule("public")],
        },
        "tim-pro",
      ),
    ).toMatchObject({ allowed: false }); // private_chat is encrypted by Synapse
    expect(checkTimCreateRoom(nonFederating, "tim-epa")).toMatchObject({
      allowed: false,
      reason: "Insured persons cannot create public rooms",
    });
  });

  it("refuses a later switch of a private room to public", () => {
    expect(checkTimJoinRule("public", "tim-pro", { federates: false, encrypted: false })).toEqual({
      allowed: true,
    });
    for (const room of [{ federates: true, encrypted: true }, { federates: false, encrypted: true }, {}]) {
      expect(checkTimJoinRule("public", "tim-pro", room)).toMatchObject({
        allowed: false,
        reason: expect.stringMatching(/private room cannot be made public/) as unknown,
      });
    }
    expect(checkTimJoinRule("public", "tim-epa", { federates: false, encrypted: false }).allowed).toBe(false);
    expect(checkTimJoinRule("knock", "tim-pro", {})).toEqual({ allowed: true });
  });
});

describe("insured persons", () => {
  const own = { serverName: "epa.example", profile: "tim-epa" as const };
  it("are the people of an ePA organisation, not MedMesh's service accounts", () => {
    expect(insuredPerson("@patient:epa.example", own)).toBe(true);
    for (const id of ["@medmesh:epa.example", "@medmesh-verify:epa.example", "@medmesh-admin:epa.example"]) {
      expect(insuredPerson(id, own)).toBe(false);
    }
    expect(insuredPerson("@doc:pro.example", own)).toBe(false);
    expect(
      insuredPerson("@p:other-epa.example", own, (s) => (s === "other-epa.example" ? "tim-epa" : undefined)),
    ).toBe(true);
    expect(insuredPerson("@doc:pro.example", { serverName: "pro.example", profile: "tim-pro" })).toBe(false);
  });
});
