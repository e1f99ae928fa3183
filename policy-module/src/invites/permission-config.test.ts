import { describe, expect, it } from "vitest";
import {
  evaluateInvite,
  evaluateOrgDefault,
  explicitlyAllows,
  OrgInvitePolicySchema,
  parsePermissionConfig,
  PERMISSION_CONFIG_TYPE,
  type InviteContext,
  type OrgDefaultContext,
  type PermissionConfig,
} from "./index.ts";

const BOB = "@bob:b.example";

const cfg = (content: unknown): PermissionConfig => {
  const parsed = parsePermissionConfig(content);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.config;
};
const may = (config: PermissionConfig | undefined, inviter: string, extra: Partial<InviteContext> = {}) =>
  evaluateInvite(config, { inviter, invitee: BOB, ...extra }).allowed;
const reasonOf = (content: unknown): string => {
  const parsed = parsePermissionConfig(content);
  if (parsed.ok) throw new Error("expected the config to be refused");
  return parsed.reason;
};

describe("permission config format", () => {
  it("uses the gematik account data type", () => {
    expect(PERMISSION_CONFIG_TYPE).toBe("de.gematik.tim.account.permissionconfig.pro.v1");
  });

  it("accepts the documented shape and keeps unknown keys for later versions", () => {
    const content = {
      defaultSetting: "block all",
      serverExceptions: { "b.example": {}, "localhost:8448": {}, "[::1]:8448": {}, "10.0.0.1": {} },
      userExceptions: { "@alice:a.example": { note: "future" } },
      groupExceptions: [{ groupName: "isInsuredPerson" }, { groupName: "someFutureGroup" }],
      futureField: { x: 1 },
    };
    expect(parsePermissionConfig(content)).toEqual({ ok: true, config: content });
  });

  it("refuses a missing or unknown defaultSetting with a reason naming the field", () => {
    expect(reasonOf({})).toBe(`defaultSetting is missing; it must be "allow all" or "block all"`);
    expect(reasonOf({ defaultSetting: "allow some" })).toBe(
      `defaultSetting must be "allow all" or "block all", not "allow some"`,
    );
  });

  it("refuses exception keys that are not user IDs or server names", () => {
    expect(reasonOf({ defaultSetting: "allow all", userExceptions: { "bob:b.example": {} } })).toBe(
      `userExceptions has a key "bob:b.example" that is not a Matrix user ID (it must start with "@")`,
    );
    expect(reasonOf({ defaultSetting: "allow all", serverExceptions: { "spam example": {} } })).toBe(
      `serverExceptions has a key "spam example" that is not a Matrix server name`,
    );
    expect(reasonOf({ defaultSetting: "allow all", serverExceptions: { "b.example:99999": {} } })).toMatch(
      /not a Matrix server name/,
    );
  });

  it("refuses non-objects, at the top level and inside", () => {
    for (const content of ["block all", null, [], 3]) {
      expect(reasonOf(content)).toBe("The permission config must be a JSON object");
    }
    expect(reasonOf({ defaultSetting: "allow all", userExceptions: { "@a:b.example": true } })).toBe(
      `userExceptions["@a:b.example"] must be an object ({})`,
    );
    expect(reasonOf({ defaultSetting: "allow all", serverExceptions: ["b.example"] })).toBe(
      "serverExceptions must be an object of server names",
    );
    expect(reasonOf({ defaultSetting: "allow all", groupExceptions: "isInsuredPerson" })).toBe(
      "groupExceptions must be an array",
    );
    expect(reasonOf({ defaultSetting: "allow all", groupExceptions: [{}] })).toBe(
      `groupExceptions[0].groupName must be a string such as "isInsuredPerson"`,
    );
  });

  it("refuses a group listed twice (uniqueItems)", () => {
    const twice = [{ groupName: "isInsuredPerson" }, { groupName: "isInsuredPerson" }];
    expect(reasonOf({ defaultSetting: "block all", groupExceptions: twice })).toBe(
      "groupExceptions must not name the same group twice",
    );
  });
});

describe("evaluateInvite (TI-M semantics: exceptions invert the default)", () => {
  it("allows everyone without a config", () => {
    expect(evaluateInvite(undefined, { inviter: "@anyone:x.example", invitee: BOB })).toEqual({
      allowed: true,
    });
  });

  it("applies the default when there are no exceptions", () => {
    expect(may(cfg({ defaultSetting: "allow all" }), "@alice:a.example")).toBe(true);
    expect(may(cfg({ defaultSetting: "block all" }), "@alice:a.example")).toBe(false);
    expect(
      may(cfg({ defaultSetting: "block all", userExceptions: {}, serverExceptions: {} }), "@a:a.example"),
    ).toBe(false);
  });

  it("user exceptions block under allow all and allow under block all", () => {
    const users = { "@mallory:c.example": {} };
    const allow = cfg({ defaultSetting: "allow all", userExceptions: users });
    expect(may(allow, "@mallory:c.example")).toBe(false);
    expect(may(allow, "@alice:c.example")).toBe(true);
    const block = cfg({ defaultSetting: "block all", userExceptions: users });
    expect(may(block, "@mallory:c.example")).toBe(true);
    expect(may(block, "@alice:c.example")).toBe(false);
  });

  it("server exceptions match every user of that server name", () => {
    const allow = cfg({ defaultSetting: "allow all", serverExceptions: { "c.example": {} } });
    expect(may(allow, "@x:c.example")).toBe(false);
    expect(may(allow, "@x:d.example")).toBe(true);
    expect(may(allow, "@x:sub.c.example")).toBe(true); // server names, not domains and subdomains
    const block = cfg({ defaultSetting: "block all", serverExceptions: { "c.example": {} } });
    expect(may(block, "@x:c.example")).toBe(true);
    expect(may(block, "@x:d.example")).toBe(false);
  });

  it("treats the port as part of the server name", () => {
    const allow = cfg({ defaultSetting: "allow all", serverExceptions: { "localhost:8448": {} } });
    expect(may(allow, "@a:localhost:8448")).toBe(false);
    expect(may(allow, "@a:localhost")).toBe(true);
    expect(may(allow, "@a:localhost:8449")).toBe(true);
    const block = cfg({
      defaultSetting: "block all",
      serverExceptions: { "localhost:8448": {} },
      userExceptions: { "@b:localhost:9000": {} },
    });
    expect(may(block, "@a:localhost:8448")).toBe(true);
    expect(may(block, "@b:localhost:9000")).toBe(true);
    expect(may(block, "@a:localhost")).toBe(false);
  });

  it("compares server names case-insensitively, localparts exactly", () => {
    const allow = cfg({
      defaultSetting: "allow all",
      serverExceptions: { "spam.example": {} },
      userExceptions: { "@mallory:c.example": {} },
    });
    expect(may(allow, "@x:SPAM.Example")).toBe(false);
    expect(may(allow, "@mallory:C.EXAMPLE")).toBe(false);
    expect(may(allow, "@Mallory:c.example")).toBe(true);
  });

  it("either kind of match inverts, and both together invert only once", () => {
    const block = cfg({
      defaultSetting: "block all",
      userExceptions: { "@alice:a.example": {} },
      serverExceptions: { "a.example": {}, "c.example": {} },
    });
    expect(may(block, "@alice:a.example")).toBe(true); // user and server both match
    expect(may(block, "@carol:c.example")).toBe(true);
    expect(may(block, "@dave:d.example")).toBe(false);
    const allow = cfg({
      defaultSetting: "allow all",
      userExceptions: { "@alice:a.example": {} },
      serverExceptions: { "a.example": {} },
    });
    expect(may(allow, "@alice:a.example")).toBe(false);
    expect(may(allow, "@carol:a.example")).toBe(false);
    expect(may(allow, "@dave:d.example")).toBe(true);
  });

  it("matches the insured-person group only when the caller says the inviter is one", () => {
    const groups = [{ groupName: "isInsuredPerson" }];
    const block = cfg({ defaultSetting: "block all", groupExceptions: groups });
    expect(may(block, "@patient:x.example", { inviterIsInsuredPerson: true })).toBe(true);
    expect(may(block, "@patient:x.example", { inviterIsInsuredPerson: false })).toBe(false);
    expect(may(block, "@doc:x.example")).toBe(false);
    const allow = cfg({ defaultSetting: "allow all", groupExceptions: groups });
    expect(may(allow, "@patient:x.example", { inviterIsInsuredPerson: true })).toBe(false);
    expect(may(allow, "@doc:x.example")).toBe(true);
    // Without the group in the config, being an insured person changes nothing.
    expect(may(cfg({ defaultSetting: "block all" }), "@p:x.example", { inviterIsInsuredPerson: true })).toBe(
      false,
    );
    const unknownGroup = cfg({ defaultSetting: "block all", groupExceptions: [{ groupName: "other" }] });
    expect(may(unknownGroup, "@p:x.example", { inviterIsInsuredPerson: true })).toBe(false);
  });

  it("gives a readable reason naming both users", () => {
    const decision = evaluateInvite(cfg({ defaultSetting: "block all" }), {
      inviter: "@mallory:c.example",
      invitee: BOB,
    });
    expect(decision).toEqual({
      allowed: false,
      reason: "@bob:b.example does not accept invites from @mallory:c.example",
    });
  });
});

describe("explicitlyAllows", () => {
  it("is true only for user or server exceptions of a block all config", () => {
    const block = cfg({
      defaultSetting: "block all",
      userExceptions: { "@u:a.example": {} },
      serverExceptions: { "c.example": {} },
      groupExceptions: [{ groupName: "isInsuredPerson" }],
    });
    expect(explicitlyAllows(block, "@u:a.example")).toBe(true);
    expect(explicitlyAllows(block, "@v:c.example")).toBe(true);
    expect(explicitlyAllows(block, "@v:a.example")).toBe(false);
    const allow = cfg({ defaultSetting: "allow all", userExceptions: { "@u:a.example": {} } });
    expect(explicitlyAllows(allow, "@u:a.example")).toBe(false); // named there means blocked
    expect(explicitlyAllows(cfg({ defaultSetting: "allow all" }), "@u:a.example")).toBe(false);
  });
});

describe("organisation default", () => {
  const base = { inviter: "@u:a.example", invitee: "@doc:a.example", inviteeHasAllowedInviter: false };
  const strict = OrgInvitePolicySchema.parse({});
  const decide = (over: Partial<OrgDefaultContext>, policy = strict) =>
    evaluateOrgDefault(policy, { ...base, inviterVerified: false, inviteeVerified: false, ...over });

  it("defaults to shielding verified users", () => {
    expect(strict).toEqual({ unverified_may_invite_verified: false });
    expect(OrgInvitePolicySchema.shape.unverified_may_invite_verified.description).toMatch(/verified/);
  });

  it.each([
    { inviterVerified: false, inviteeVerified: false, allowed: true },
    { inviterVerified: true, inviteeVerified: false, allowed: true },
    { inviterVerified: true, inviteeVerified: true, allowed: true },
    { inviterVerified: false, inviteeVerified: true, allowed: false },
  ])("inviter verified $inviterVerified, invitee verified $inviteeVerified → $allowed", (c) => {
    expect(decide(c).allowed).toBe(c.allowed);
  });

  it("refuses unverified → verified with a reason naming both users", () => {
    expect(decide({ inviteeVerified: true })).toEqual({
      allowed: false,
      reason:
        "@doc:a.example is a verified clinician and accepts invites from @u:a.example, who is not " +
        "verified, only after adding them to their invite settings",
    });
  });

  it("lets an explicit allowance or the organisation's opt-out through", () => {
    expect(decide({ inviteeVerified: true, inviteeHasAllowedInviter: true }).allowed).toBe(true);
    expect(decide({ inviteeVerified: true }, { unverified_may_invite_verified: true }).allowed).toBe(true);
  });

  it("works with explicitlyAllows on the invitee's config", () => {
    const config = cfg({ defaultSetting: "block all", userExceptions: { "@u:a.example": {} } });
    const own = evaluateInvite(config, { inviter: base.inviter, invitee: base.invitee });
    expect(own.allowed).toBe(true);
    expect(
      decide({ inviteeVerified: true, inviteeHasAllowedInviter: explicitlyAllows(config, base.inviter) }),
    ).toEqual({ allowed: true });
  });
});
