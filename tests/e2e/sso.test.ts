import type { JsonWebKey } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { createSynapseAdmin, registerWithSharedSecret } from "@medmesh/common";
import { REPO_ROOT, type RunningOrganisation } from "@medmesh/deploy";
import {
  startBigTestServer,
  type BigTestRecord,
} from "../../policy-module/src/identity/registries/big/test-server.ts";
import { verifyAttestation } from "../../policy-module/src/identity/attestation.ts";
import { publicJwkOf } from "../../policy-module/src/trust/trust-list.ts";
import {
  Browser,
  OpenApiContract,
  startChromium,
  startTestIdp,
  useTestNetwork,
  waitUntil,
  type IdpAccount,
  type TestIdp,
} from "../harness/index.ts";

// The registry: Clara is registered; Dirk's registration ended (struck off).
const CLARA_BIG: BigTestRecord = {
  number: "39012345603",
  initials: "C.",
  surname: "Bakker",
  mailingName: "C. Bakker",
  professionCode: "01",
};
const DIRK_BIG: BigTestRecord = {
  number: "49012345604",
  initials: "D.",
  surname: "Visser",
  mailingName: "D. Visser",
  professionCode: "01",
  registrationEnd: "2024-01-31",
};
const big = await startBigTestServer([CLARA_BIG, DIRK_BIG]);

// The hospital's staff as its identity provider knows them, with the BIG number as a claim.
const CLARA: IdpAccount = {
  username: "c.bakker",
  password: "clara-sso-password",
  sub: "emp-1001",
  claims: {
    name: "Clara Bakker",
    preferred_username: "c.bakker@hospital-a.example",
    big_number: CLARA_BIG.number,
  },
};
const DIRK: IdpAccount = {
  username: "d.visser",
  password: "dirk-sso-password",
  sub: "emp-1002",
  claims: { name: "Dirk Visser", preferred_username: "d.visser", big_number: DIRK_BIG.number },
};

// Where Synapse sends the login token: a client app, never requested (the test reads the token).
const APP = "http://127.0.0.1:9/medmesh-app/";

let idp: TestIdp | undefined;
afterAll(async () => {
  await idp?.stop();
  await big.stop();
});

const net = useTestNetwork({
  name: "sso",
  organisations: 1,
  identity: { registries: { big: { url: big.url, timeout_ms: 1500 } }, bot: false },
  organisationSettings: { 0: { name: "Hospital A", require_id_document: true } },
  organisationSettingsFor: async ([a], dataDir) => {
    if (!a) throw new Error("one organisation expected");
    idp = await startTestIdp({
      accounts: [CLARA, DIRK],
      redirectUri: `${a.clientUrl}/_synapse/client/oidc/callback`,
      extraClaims: ["big_number"],
    });
    const secretFile = join(dataDir, "idp-client-secret");
    writeFileSync(secretFile, idp.clientSecret, { mode: 0o600 });
    return {
      0: {
        sso: {
          issuer: idp.issuer,
          client_id: idp.clientId,
          client_secret_file: secretFile,
          claims: { registration_number: { claim: "big_number", registry: "BIG" } },
          password_login: false,
          client_redirect_urls: [APP],
        },
      },
    };
  },
});

const org = (): RunningOrganisation => net().orgs[0]!;
const contract = new OpenApiContract(join(REPO_ROOT, "policy-module", "openapi", "policy-module.yaml"));

/**
 * Signs in through the organisation's single sign-on as a browser does: the client's SSO
 * redirect, the identity provider's sign-in page, the callback into Synapse (all through the
 * MedMesh proxy), up to the client app's URL with the login token; then the token login.
 */
async function signInWithSso(person: IdpAccount) {
  const browser = new Browser();
  const start =
    `${org().clientUrl}/_matrix/client/v3/login/sso/redirect/oidc-${org().org.id}` +
    `?redirectUrl=${encodeURIComponent(APP)}`;
  const signInPage = await browser.follow(start);
  expect(signInPage.status).toBe(200);
  expect(signInPage.url.startsWith(`${idp?.issuer ?? "?"}/interaction/`)).toBe(true);
  const done = await browser.submit(
    signInPage,
    { username: person.username, password: person.password },
    (location) => location.startsWith(APP),
  );
  if (!done.stoppedAt)
    throw new Error(`SSO did not reach the app: ${String(done.status)} ${done.body.slice(0, 500)}`);
  const loginToken = new URL(done.stoppedAt).searchParams.get("loginToken");
  expect(loginToken).toBeTruthy();
  const res = await fetch(`${org().clientUrl}/_matrix/client/v3/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ type: "m.login.token", token: loginToken }),
  });
  const session = (await res.json()) as { user_id: string; access_token: string };
  expect(res.status).toBe(200);
  return { ...session, browser };
}

async function verificationOf(accessToken: string) {
  const path = "/_medmesh/identity/v1/verification";
  const res = await fetch(`${org().clientUrl}${path}`, {
    headers: { authorization: `Bearer ${accessToken}` },
  });
  const op = contract.match("GET", path);
  if (op) await contract.check(op, res.clone());
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function waitForStatus(accessToken: string, status: string) {
  let last: Record<string, unknown> = {};
  await waitUntil(async () => {
    const res = await verificationOf(accessToken);
    last = res.body;
    return res.status === 200 && last.status === status;
  }, `verification status ${status}`).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; last seen: ${JSON.stringify(last)}`);
  });
  return last;
}

describe("single sign-on with the organisation's identity provider", () => {
  it("offers the identity provider and no password login", async () => {
    const res = await fetch(`${org().clientUrl}/_matrix/client/v3/login`);
    const { flows } = (await res.json()) as {
      flows: { type: string; identity_providers?: { id: string; name: string }[] }[];
    };
    const types = flows.map((f) => f.type);
    expect(types).toContain("m.login.sso");
    expect(types).toContain("m.login.token");
    expect(types).not.toContain("m.login.password");
    expect(flows.find((f) => f.type === "m.login.sso")?.identity_providers).toEqual([
      expect.objectContaining({ id: `oidc-${org().org.id}`, name: "Hospital A" }),
    ]);
  });

  it("signs a clinician in through the IdP (code flow with PKCE); the claimed BIG number verifies them, identity proven by Hospital A", async () => {
    const before = big.requests;
    const clara = await signInWithSso(CLARA);
    expect(clara.user_id).toBe(`@c.bakker:${org().serverName}`);
    // Synapse sent the browser to the IdP with an S256 code challenge and exchanged the code with its verifier.
    const authorize = clara.browser.visited.find((u) => u.startsWith(`${idp?.issuer ?? "?"}/auth`));
    expect(new URL(authorize ?? "http://x").searchParams.get("code_challenge_method")).toBe("S256");
    expect(idp?.tokenRequestsWithVerifier).toBe(1);

    // The registry check runs after the login, like a typed number; no ID document is asked for
    // (the organisation requires one from self-registered clinicians only).
    const status = await waitForStatus(clara.access_token, "verified");
    expect(status).toMatchObject({
      registry: "BIG",
      profession: "physician",
      identity_proven_by: "Hospital A",
    });
    expect(big.requests).toBe(before + 1);
    expect(big.lastRequest?.number).toBe(CLARA_BIG.number);

    // The signed attestation (the profile field MedMesh sets) carries both facts.
    const field = `/_matrix/client/v3/profile/${encodeURIComponent(clara.user_id)}/org.medmesh.verification`;
    let attestation = "";
    await waitUntil(async () => {
      const res = await fetch(`${org().clientUrl}${field}`, {
        headers: { authorization: `Bearer ${clara.access_token}` },
      });
      const body = (await res.json()) as { "org.medmesh.verification"?: { attestation?: string } };
      attestation = body["org.medmesh.verification"]?.attestation ?? "";
      return attestation !== "";
    }, "the verification profile field");
    // Checked as a peer does, with the organisation's public key (the one on the trust list).
    const key = publicJwkOf(JSON.parse(readFileSync(org().paths.organisationKey, "utf8")) as JsonWebKey);
    const claims = verifyAttestation(attestation, { issuer: org().serverName, subject: clara.user_id }, [
      key,
    ]);
    expect(claims).toMatchObject({
      registry: "BIG",
      profession: "physician",
      identity_proven_by: "Hospital A",
    });
    expect(JSON.stringify(claims)).not.toContain(CLARA_BIG.number);

    // Signing in again is the same account; unchanged claims are not checked again.
    const again = await signInWithSso(CLARA);
    expect(again.user_id).toBe(clara.user_id);
    expect(idp?.signIns.filter((u) => u === CLARA.username)).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 500));
    expect(big.requests).toBe(before + 1);
    expect((await verificationOf(again.access_token)).body.status).toBe("verified");
  });

  it("does not verify a user whose IdP claim names a struck-off number", async () => {
    const dirk = await signInWithSso(DIRK);
    const status = await waitForStatus(dirk.access_token, "rejected");
    expect(String(status.reason)).toMatch(/struck off/);
    expect(status).toMatchObject({ registry: "BIG", identity_proven_by: "Hospital A" });
  });

  it("refuses password login with a Matrix error, through the proxy", async () => {
    const o = org();
    // An account with a password (created by the operator's shared secret): its password does not sign in.
    await registerWithSharedSecret(o.synapseUrl, o.registrationSecret, {
      localpart: "with-password",
      password: "a-long-password",
    });
    const res = await fetch(`${o.clientUrl}/_matrix/client/v3/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: "with-password" },
        password: "a-long-password",
      }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({
      errcode: expect.stringMatching(/^M_/) as unknown,
      error: expect.stringMatching(/Password login has been disabled/) as unknown,
    });
  });

  it("signs an org admin in to the admin console through the identity provider, in Chromium", async () => {
    // Clara's account exists (her first SSO sign-in); the operator makes her a server admin, so
    // she is one of the organisation's first console admins.
    const clara = await signInWithSso(CLARA);
    // Password login is off: MedMesh's admin account signs in as the policy module's appservice.
    const admin = createSynapseAdmin({
      url: org().synapseUrl,
      registrationSharedSecret: org().registrationSecret,
      appserviceToken: org().services.find((s) => s.name === "policy-module")?.registration.as_token ?? "",
    });
    await admin.request("PUT", `/_synapse/admin/v2/users/${encodeURIComponent(clara.user_id)}`, {
      admin: true,
    });
    const chromium = await startChromium("sso-console");
    try {
      const page = await chromium.page("en-GB");
      await page.goto(`${org().clientUrl}/_medmesh/console/`);
      // Password login is off here: the page offers the organisation's provider only.
      await page.waitForSelector(`#sso-oidc-${org().org.id}`);
      expect(await page.$("#sign-in")).toBeNull();
      expect(await chromium.axe(page)).toEqual([]);
      await chromium.screenshot(page, "sso-sign-in");
      await Promise.all([page.waitForNavigation(), page.click(`#sso-oidc-${org().org.id}`)]);
      expect(page.url().startsWith(`${idp?.issuer ?? "?"}/interaction/`)).toBe(true);
      await page.type("input[name=username]", CLARA.username);
      await page.type("input[name=password]", CLARA.password);
      await page.click("button[type=submit]");
      // Back through Synapse's callback to the console, which trades the login token for a session.
      await page.waitForSelector("header nav", { timeout: 60_000 });
      expect(new URL(page.url()).searchParams.get("loginToken"), "the token left the address bar").toBeNull();
      const session = await page.evaluate(async () => {
        const res = await fetch("/_medmesh/console/api/v1/session", { credentials: "same-origin" });
        return (await res.json()) as { user_id?: string; role?: string };
      });
      expect(session).toMatchObject({ user_id: clara.user_id, role: "org_admin" });
    } finally {
      await chromium.close();
    }
  });
});
