import { describe, expect, it } from "vitest";
import { timMirrorOf } from "./tim-mirror.ts";

describe("TI-M name and topic copies", () => {
  it("copy m.room.name and m.room.topic (a removed one as empty), nothing else", () => {
    expect(timMirrorOf({ type: "m.room.name", state_key: "", content: { name: "Ward 3" } })).toEqual({
      type: "de.gematik.tim.room.name",
      content: { name: "Ward 3" },
    });
    expect(timMirrorOf({ type: "m.room.topic", state_key: "", content: {} })).toEqual({
      type: "de.gematik.tim.room.topic",
      content: {},
    });
    expect(timMirrorOf({ type: "m.room.name", state_key: "x", content: { name: "n" } })).toBeUndefined();
    expect(timMirrorOf({ type: "m.room.message", content: { body: "hi" } })).toBeUndefined();
  });
});
