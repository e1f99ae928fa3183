import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAuditLog, createLogger, createStore, type Store, type SynapseAdmin } from "@medmesh/common";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verificationRecords } from "./records.ts";
import { startBigTestServer, type BigTestServer } from "./registries/big/test-server.ts";
import { createBigRegistry } from "./registries/big/client.ts";
import { createSingleSignOn, ssoIdentities } from "./sso.ts";
import { IDENTITY_MIGRATIONS } from "./migrations.ts";
import { createVerifier } from "./verifier.ts";

const IDP = "oidc-hospital-a";
const EVA = {
  number: "59012345605",
  initials: "E.",
  surname: "Smit",
  mailingName: "E. Smit",
  professionCode: "01",
};

describe("single sign-on identities", () => {
  let store: Store;
  let big: BigTestServer;
  beforeAll(async () => {
    store = await createStore(
      { type: "pglite", data_dir: mkdtempSync(join(tmpdir(), "medmesh-sso-")) },
      { migrations: IDENTITY_MIGRATIONS },
    );
    big = await startBigTestServer([EVA]);
  });
  afterAll(async () => {
    await big.stop();
    await store.close();
  });

  const setup = (externalIds: Record<string, { auth_provider: string; external_id: string }[]>) => {
    const records = verificationRecords(store.knex);
    const identities = ssoIdentities(store.knex);
    const audit = createAuditLog(store.knex);
    const log = createLogger("test", "silent");
    const verifier = createVerifier({
      serverName: "hospital-a.example",
      records,
      registries: new Map([["BIG", createBigRegistry({ url: big.url, timeoutMs: 1000 })]]),
      audit,
      log,
      validityMs: 3_600_000,
      organisationName: "Hospital A",
    });
    // Synapse's admin API as far as SSO asks it: the account's external_ids.
    const admin: SynapseAdmin = {
      userId: "@medmesh-admin:hospital-a.example",
      request: <T>(_method: string, path: string) => {
        const userId = decodeURIComponent(path.split("/").pop() ?? "");
        return Promise.resolve({ external_ids: externalIds[userId] ?? [] } as T);
      },
    };
    const sso = createSingleSignOn({
      config: {
        idp_id: IDP,
        organisation_name: "Hospital A",
        name_claim: "name",
        registration: { claim: "big_number", registry: "BIG" },
      },
      identities,
      admin,
      verifier,
      audit,
      log,
    });
    return { sso, records, identities, audit };
  };

  it("binds the claims to the account Synapse linked to the subject and checks the claimed number", async () => {
    const user = "@e.smit:hospital-a.example";
    const { sso, records, identities, audit } = setup({
      [user]: [{ auth_provider: IDP, external_id: "emp-7" }],
    });
    expect(
      await sso.claims({
        idp_id: IDP,
        subject: "emp-7",
        claims: { name: "Eva Smit", big_number: EVA.number },
      }),
    ).toEqual({ allowed: true });
    expect(await sso.login({ user_id: user, idp_id: IDP })).toEqual({ allowed: true });
    await sso.settled();
    expect(await records.get(user)).toMatchObject({
      status: "verified",
      registration_number: EVA.number,
      identity_provider: IDP,
    });
    expect(await sso.identityProvider(user)).toBe(IDP);
    expect(await identities.get(IDP, "emp-7")).toMatchObject({ user_id: user, name: "Eva Smit" });
    const entries = await audit.find({ object: user });
    expect(entries.map((e) => e.action)).toContain("identity.sso_login");
    expect(JSON.stringify(entries)).not.toContain(EVA.number);
  });

  it("refuses another identity provider and an account Synapse has not linked", async () => {
    const { sso } = setup({ "@pw:hospital-a.example": [] });
    expect(await sso.claims({ idp_id: "oidc-elsewhere", subject: "x", claims: {} })).toMatchObject({
      allowed: false,
      reason: "oidc-elsewhere is not Hospital A's identity provider",
    });
    expect(await sso.login({ user_id: "@pw:hospital-a.example", idp_id: IDP })).toMatchObject({
      allowed: false,
      reason: "This account is not linked to Hospital A's identity provider",
    });
    expect(await sso.identityProvider("@pw:hospital-a.example")).toBeUndefined();
  });

  it("leaves the number to the clinician when the identity provider gives none", async () => {
    const user = "@no-claim:hospital-a.example";
    const { sso, records } = setup({ [user]: [{ auth_provider: IDP, external_id: "emp-8" }] });
    await sso.claims({ idp_id: IDP, subject: "emp-8", claims: { name: "N. Claim", big_number: { odd: 1 } } });
    expect(await sso.login({ user_id: user, idp_id: IDP })).toEqual({ allowed: true });
    await sso.settled();
    expect(await records.get(user)).toBeUndefined();
    expect(await sso.identityProvider(user)).toBe(IDP);
  });
});
