import { describe, expect, it } from "vitest";
import { missingTrustProblem, TrustConfigSchema } from "./config.ts";

describe("trust config: closed unless open federation is said explicitly", () => {
  it("refuses a policy module without a trust section, saying how to open federation", () => {
    expect(missingTrustProblem(undefined)).toMatch(
      /no trust list configured[\s\S]*trust: \{ open_federation: true \}/,
    );
    expect(missingTrustProblem(TrustConfigSchema.parse({ open_federation: true }))).toBeUndefined();
  });

  it("needs operator keys and lists unless open_federation is true, and not both", () => {
    const issues = (v: unknown) =>
      TrustConfigSchema.safeParse(v).error?.issues.map((i) => `${i.path.join(".")}: ${i.message}`) ?? [];
    expect(issues({})).toEqual([
      "operator_keys: needs at least one entry (or open_federation: true to federate with any server)",
      "lists: needs at least one entry (or open_federation: true to federate with any server)",
    ]);
    expect(issues({ operator_keys: ["op.jwk"], lists: [{ file: "list.jws" }] })).toEqual([]);
    expect(issues({ open_federation: true, lists: [{ file: "list.jws" }] })).toEqual([
      expect.stringMatching(/^open_federation: open_federation: true ignores trust lists/),
    ]);
  });
});
