import { describe, expect, it } from "vitest";
import {
  evaluateInvite,
  evaluateOrgDefault,
  explicitlyAllows,
  parsePermissionConfig,
  type PermissionConfig,
} from "./permission-config.ts";

const cfg = (c: unknown): PermissionConfig => {
  const parsed = parsePermissionConfig(c);
  if (!parsed.ok) throw new Error(parsed.reason);
  return parsed.config;
};
const invite = (config: PermissionConfig | undefined, inviter: string, extra = {}) =>
  evaluateInvite(config, { inviter, invitee: "@bob:b.example", ...extra }).allowed;

describe("TI-Messenger invite permissions", () => {
  it("allow all blocks only the exceptions; block all allows only the exceptions", () => {
    const allow = cfg({
      defaultSetting: "allow all",
      userExceptions: { "@mallory:c.example": {} },
      serverExceptions: { "spam.example:8448": {} },
    });
    expect(invite(allow, "@alice:a.example")).toBe(true);
    expect(invite(allow, "@mallory:c.example")).toBe(false);
    expect(invite(allow, "@x:spam.example:8448")).toBe(false); // server name with port
    expect(invite(allow, "@x:spam.example")).toBe(true);
    const block = cfg({
      defaultSetting: "block all",
      userExceptions: { "@alice:a.example": {} },
      serverExceptions: { "b.example": {} },
    });
    expect(invite(block, "@alice:a.example")).toBe(true);
    expect(invite(block, "@colleague:b.example")).toBe(true);
    expect(invite(block, "@carol:a.example")).toBe(false);
    expect(invite(undefined, "@anyone:x.example")).toBe(true);
  });

  it("treats the insured-person group as an exception only for insured persons", () => {
    const block = cfg({ defaultSetting: "block all", groupExceptions: [{ groupName: "isInsuredPerson" }] });
    expect(invite(block, "@patient:x.example", { inviterIsInsuredPerson: true })).toBe(true);
    expect(invite(block, "@doc:x.example")).toBe(false);
  });

  it("gives a reason that names both users", () => {
    expect(
      evaluateInvite(cfg({ defaultSetting: "block all" }), {
        inviter: "@m:c.example",
        invitee: "@bob:b.example",
      }),
    ).toEqual({
      allowed: false,
      reason: "@bob:b.example does not accept invites from @m:c.example",
    });
  });

  it("refuses malformed configs with the path at fault", () => {
    expect(parsePermissionConfig({})).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/^defaultSetting/) as unknown,
    });
    expect(parsePermissionConfig({ defaultSetting: "allow some" })).toMatchObject({ ok: false });
    expect(
      parsePermissionConfig({ defaultSetting: "allow all", userExceptions: { "bob:x": {} } }),
    ).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/user exceptions must be Matrix user IDs/) as unknown,
    });
    expect(parsePermissionConfig("block all")).toMatchObject({ ok: false });
    expect(parsePermissionConfig({ defaultSetting: "allow all", futureField: 1 }).ok).toBe(true);
  });

  it("applies the organisation default: unverified users need the verified invitee's explicit allowance", () => {
    const base = { inviter: "@u:a.example", invitee: "@doc:a.example", inviteeHasAllowedInviter: false };
    const policy = { unverified_may_invite_verified: false };
    expect(
      evaluateOrgDefault(policy, { ...base, inviterVerified: false, inviteeVerified: true }).allowed,
    ).toBe(false);
    expect(
      evaluateOrgDefault(policy, { ...base, inviterVerified: true, inviteeVerified: true }).allowed,
    ).toBe(true);
    expect(
      evaluateOrgDefault(policy, { ...base, inviterVerified: false, inviteeVerified: false }).allowed,
    ).toBe(true);
    expect(
      evaluateOrgDefault(policy, { ...base, inviterVerified: true, inviteeVerified: false }).allowed,
    ).toBe(true);
    expect(
      evaluateOrgDefault(policy, {
        ...base,
        inviterVerified: false,
        inviteeVerified: true,
        inviteeHasAllowedInviter: true,
      }).allowed,
    ).toBe(true);
    expect(
      evaluateOrgDefault(
        { unverified_may_invite_verified: true },
        { ...base, inviterVerified: false, inviteeVerified: true },
      ).allowed,
    ).toBe(true);
    const block = cfg({ defaultSetting: "block all", userExceptions: { "@u:a.example": {} } });
    expect(explicitlyAllows(block, "@u:a.example")).toBe(true);
    expect(explicitlyAllows(cfg({ defaultSetting: "allow all" }), "@u:a.example")).toBe(false);
  });
});
