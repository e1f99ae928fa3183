import { describe, expect, it } from "vitest";
import { sameKindOnly } from "./tim-rules.ts";

describe("TI-M user searches", () => {
  const insured = (id: string) => id.endsWith(":epa.example");
  const answer = {
    limited: false,
    results: [
      { user_id: "@p:epa.example" },
      { user_id: "@doc:pro.example", display_name: "Doc" },
      { nope: 1 },
    ],
  };
  it("leave out the other kind of user, both ways", () => {
    expect(sameKindOnly(answer, "@nurse:pro.example", insured)).toEqual({
      limited: false,
      results: [{ user_id: "@doc:pro.example", display_name: "Doc" }],
    });
    expect(sameKindOnly(answer, "@q:epa.example", insured)).toEqual({
      limited: false,
      results: [{ user_id: "@p:epa.example" }],
    });
    expect(sameKindOnly({ errcode: "M_X" }, "@q:epa.example", insured)).toEqual({ errcode: "M_X" });
  });
});
