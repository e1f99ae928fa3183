import { describe, expect, it } from "vitest";
import { ChannelSpecSchema, specProblem } from "./spec.ts";

const problem = (body: unknown): string | undefined => {
  const parsed = ChannelSpecSchema.safeParse(body);
  return parsed.success ? undefined : specProblem(parsed.error);
};

describe("channel spec", () => {
  it("takes a channel with a publisher, with the defaults filled in", () => {
    expect(ChannelSpecSchema.parse({ name: "Recalls", publishers: ["@p:a.example"] })).toEqual({
      name: "Recalls",
      scope: "organisation",
      organisations: [],
      professions: [],
      publishers: ["@p:a.example"],
      mandatory: false,
    });
  });

  it("refuses a channel without publishers, naming the field", () => {
    expect(problem({ name: "Recalls", publishers: [] })).toBe(
      "Invalid channel: publishers: A channel needs at least one publisher (the users who may post); none were given",
    );
    expect(problem({ name: "Recalls" })).toMatch(/^Invalid channel: publishers: /);
  });

  it("refuses what is not a user ID, an unknown scope and unknown fields", () => {
    expect(problem({ name: "R", publishers: ["paul"] })).toMatch(/publishers\.0: must be a Matrix user ID/);
    expect(problem({ name: "R", publishers: ["@p:a"], scope: "world" })).toMatch(/^Invalid channel: scope: /);
    expect(problem({ name: "R", publishers: ["@p:a"], colour: "red" })).toMatch(/colour/);
    expect(problem({ name: " ", publishers: ["@p:a"] })).toMatch(/^Invalid channel: name: /);
  });
});
