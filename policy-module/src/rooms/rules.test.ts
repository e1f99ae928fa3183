import { describe, expect, it } from "vitest";
import { checkRoomState, MEGOLM, presetJoinRule } from "./rules.ts";

const closed = { allow_public_rooms: false };
const state = (type: string, content: Record<string, unknown>) => checkRoomState({ type, content }, closed);

describe("room rules", () => {
  it("allows only Megolm as the encryption algorithm, and no removal of it", () => {
    expect(state("m.room.encryption", { algorithm: MEGOLM })).toEqual({ allowed: true });
    expect(state("m.room.encryption", { algorithm: "m.none.plaintext" })).toMatchObject({
      allowed: false,
      reason: expect.stringMatching(/"m\.none\.plaintext" is not allowed/) as unknown,
    });
    expect(state("m.room.encryption", {})).toMatchObject({ allowed: false });
    expect(state("m.room.encryption", { algorithm: 42 })).toMatchObject({ allowed: false });
  });

  it("refuses world_readable history and, unless allowed, public join rules", () => {
    expect(state("m.room.history_visibility", { history_visibility: "world_readable" }).allowed).toBe(false);
    for (const v of ["shared", "invited", "joined"]) {
      expect(state("m.room.history_visibility", { history_visibility: v }).allowed).toBe(true);
    }
    expect(state("m.room.join_rules", { join_rule: "public" }).allowed).toBe(false);
    expect(
      checkRoomState(
        { type: "m.room.join_rules", content: { join_rule: "public" } },
        { allow_public_rooms: true },
      ),
    ).toEqual({ allowed: true });
    for (const r of ["invite", "knock", "restricted", "knock_restricted"]) {
      expect(state("m.room.join_rules", { join_rule: r }).allowed).toBe(true);
    }
    expect(state("m.room.name", { name: "anything" }).allowed).toBe(true);
  });

  it("reads the join rule a createRoom preset or visibility implies", () => {
    expect(presetJoinRule({ preset: "public_chat" })).toBe("public");
    expect(presetJoinRule({ visibility: "public" })).toBe("public");
    expect(presetJoinRule({ visibility: "public", preset: "private_chat" })).toBe("invite");
    expect(presetJoinRule({ preset: "trusted_private_chat" })).toBe("invite");
    expect(presetJoinRule({})).toBeUndefined();
  });
});
