import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventTimeline, HttpApiEvent, type MatrixClient, type MatrixError } from "matrix-js-sdk";
import type { RunningOrganisation } from "@medmesh/deploy";
import { runAdminCli } from "@medmesh/policy-module";
import { startBigTestServer } from "../../policy-module/src/identity/registries/big/test-server.ts";
import { JPEG_WITH_GPS } from "../../policy-module/src/media/test-images.ts";
import {
  startChromium,
  useTestNetwork,
  waitForMembership,
  waitUntil,
  type HeadlessChromium,
  type TestUser,
} from "../harness/index.ts";
import {
  apiSignIn,
  capture,
  CONSOLE,
  consoleApi,
  openSection,
  pageSignIn,
  registerWithPassword,
  text,
} from "./console-helpers.ts";

// The organisation's admin console in real headless Chromium, against real Synapse (docs/console.md).
const big = await startBigTestServer([
  {
    number: "29012345602",
    initials: "B.",
    surname: "Jansen",
    mailingName: "B. Jansen",
    professionCode: "30",
  },
]);
afterAll(() => big.stop());

const net = useTestNetwork({
  name: "console",
  organisations: 2,
  identity: {
    registries: { big: { url: big.url, timeout_ms: 1500 } },
    id_document: { max_bytes: 64 * 1024 },
  },
  organisationSettings: { 0: { require_id_document: true } },
});
const org = (i: number): RunningOrganisation => net().orgs[i]!;

let chromium: HeadlessChromium;
beforeAll(async () => {
  chromium = await startChromium("console");
});
afterAll(() => chromium.close());

const mx = async (u: TestUser, method: string, path: string, body?: unknown) => {
  const res = await fetch(`${u.org.clientUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${u.accessToken}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

describe("the organisation's admin console", () => {
  let admin: Awaited<ReturnType<typeof registerWithPassword>>;
  let bram: TestUser;
  let bramClient: MatrixClient;
  let carolClient: MatrixClient;
  let roomId: string;

  it("lets the org admin approve an ID document in the browser; the badge appears in a shared room", async () => {
    const a = org(0);
    admin = await registerWithPassword(a, "console-admin", true);
    bram = await net().registerUser(a, "bram");
    const carol = await net().registerUser(a, "carol");
    [bramClient, carolClient] = await Promise.all([net().client(bram), net().client(carol)]);
    roomId = (await carolClient.createRoom({ invite: [bram.userId] })).room_id;
    await waitForMembership(bramClient, roomId, "invite", { description: "Carol's invite" });
    await bramClient.joinRoom(roomId);
    // Bram asks to be verified; his organisation wants an ID document reviewed first.
    expect(
      (
        await mx(bram, "POST", "/_medmesh/identity/v1/verification", {
          registry: "BIG",
          number: "29012345602",
          claimed_name: "B. Jansen",
        })
      ).body,
    ).toMatchObject({ status: "awaiting_document" });
    const up = await fetch(`${a.clientUrl}/_medmesh/identity/v1/document`, {
      method: "PUT",
      headers: { authorization: `Bearer ${bram.accessToken}`, "content-type": "image/jpeg" },
      body: JPEG_WITH_GPS,
    });
    expect(up.status).toBe(200);

    const page = await chromium.page("en-GB");
    await page.goto(`${a.clientUrl}${CONSOLE}/`);
    await page.waitForSelector("#sign-in");
    expect(await capture(chromium, page, "01-sign-in")).toEqual([]);
    await pageSignIn(page, a, admin.localpart, admin.password);
    // The session cookie is httpOnly and SameSite=Strict: the page's scripts cannot read it.
    const cookies = await page.browserContext().cookies();
    expect(cookies.find((c) => c.name === "medmesh_console")).toMatchObject({
      httpOnly: true,
      sameSite: "Strict",
    });
    expect(
      await page.evaluate(() => (globalThis as unknown as { document: { cookie: string } }).document.cookie),
    ).not.toContain("medmesh_console");

    await openSection(page, "queue");
    await page.waitForSelector(`#reviews button[data-user="${bram.userId}"]`);
    await page.click(`#reviews button[data-user="${bram.userId}"]`);
    await page.waitForFunction(() => {
      const img = (
        globalThis as unknown as {
          document: { querySelector(s: string): { complete: boolean; naturalWidth: number } | null };
        }
      ).document.querySelector("#document");
      return img !== null && img.complete && img.naturalWidth > 0;
    });
    expect(await text(page, "#registered-name")).toBe("B. Jansen");
    expect(await capture(chromium, page, "02-verification-queue")).toEqual([]);
    await page.click("#approve");
    await page.waitForSelector("#queue-message");
    expect(await text(page, "#queue-message")).toContain(bram.userId);
    // The badge, as Carol's matrix-js-sdk client sees the room's state.
    await waitUntil(
      () =>
        carolClient
          .getRoom(roomId)
          ?.getLiveTimeline()
          .getState(EventTimeline.FORWARDS)
          ?.getStateEvents("org.medmesh.verification", `user:${bram.userId}`)
          ?.getContent().verified === true,
      "Bram's verified badge in the shared room",
    );
    await page.close();
  });

  it("remote wipe from the members page signs the user's client out for good (M_UNKNOWN_TOKEN, soft_logout false)", async () => {
    const a = org(0);
    const loggedOut = new Promise<MatrixError>((resolve) =>
      bramClient.once(HttpApiEvent.SessionLoggedOut, resolve),
    );
    const page = await chromium.page("en-GB");
    page.on("dialog", (d) => void d.accept());
    await pageSignIn(page, a, admin.localpart, admin.password);
    await openSection(page, "members");
    await page.type("#member-search", "bram");
    await page.click("form[role=search] button");
    await page.waitForSelector(`#members button[data-user="${bram.userId}"]`);
    expect(await capture(chromium, page, "03-members")).toEqual([]);
    await page.click(`#members button[data-user="${bram.userId}"]`);
    await page.waitForSelector("#devices");
    expect(await text(page, "#member-verification")).toBe("verified");
    expect(await capture(chromium, page, "04-member-devices")).toEqual([]);
    await page.click("#wipe");
    await page.waitForSelector("#member-message");
    await page.waitForSelector("#no-devices");
    const err = await loggedOut;
    expect(err.errcode).toBe("M_UNKNOWN_TOKEN");
    expect(err.data.soft_logout).toBe(false);
    expect(await mx(bram, "GET", "/_matrix/client/v3/account/whoami")).toMatchObject({
      status: 401,
      body: { errcode: "M_UNKNOWN_TOKEN", soft_logout: false },
    });
    await page.close();
  });

  it("a reviewer granted in the console sees no wipe button, and the API answers 403", async () => {
    const a = org(0);
    const rita = await registerWithPassword(a, "rita");
    const page = await chromium.page("en-GB");
    await pageSignIn(page, a, admin.localpart, admin.password);
    await openSection(page, "roles");
    await page.type("#grant-user", "rita");
    await page.select("#grant-role", "reviewer");
    await page.click("#grant");
    await page.waitForSelector("#roles-message");
    expect(await capture(chromium, page, "05-roles")).toEqual([]);
    await page.close();

    const rp = await chromium.page("en-GB");
    await pageSignIn(rp, a, rita.localpart, rita.password);
    expect(await rp.$(`header nav a[href="${CONSOLE}/roles"]`)).toBeNull();
    await openSection(rp, "members");
    await rp.waitForSelector(`#members button[data-user="@carol:${a.serverName}"]`);
    await rp.click(`#members button[data-user="@carol:${a.serverName}"]`);
    await rp.waitForSelector("#history");
    expect(await rp.$("#wipe")).toBeNull();
    expect(await rp.$("#member-actions")).toBeNull();
    await rp.close();
    const s = await apiSignIn(a, rita.localpart, rita.password);
    expect(s.body).toMatchObject({ role: "reviewer" });
    const refused = await consoleApi(
      a,
      "POST",
      `/users/${encodeURIComponent(`@carol:${a.serverName}`)}/wipe`,
      {
        cookie: s.cookie,
        csrf: s.csrf,
        body: { confirm: `@carol:${a.serverName}` },
      },
    );
    expect(refused).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    expect(String(refused.body.error)).toContain("reviewer");
    expect(carolClient.getSyncState()).not.toBe("ERROR");
    expect(
      (
        await mx(
          { ...bram, accessToken: carolClient.getAccessToken() ?? "" },
          "GET",
          "/_matrix/client/v3/account/whoami",
        )
      ).status,
    ).toBe(200);
  });

  it("the audit page shows the console's actions and the chain verifies; status page; French and Dutch", async () => {
    const a = org(0);
    const page = await chromium.page("fr-BE");
    await pageSignIn(page, a, admin.localpart, admin.password);
    // The browser's language picks French.
    expect(await page.$eval("html", (e) => (e as unknown as { lang: string }).lang)).toBe("fr");
    await openSection(page, "audit");
    await page.waitForSelector("#audit");
    expect(await text(page, "main h1")).toBe("Journal d'audit");
    const rows = await text(page, "#audit");
    for (const action of [
      "identity.review",
      "console.remote_wipe",
      "console.role_granted",
      "console.sign_in",
    ])
      expect(rows).toContain(action);
    await page.click("#verify");
    await page.waitForSelector("#verify-result");
    expect(await text(page, "#verify-result")).toContain("La chaîne est intacte.");
    expect(await capture(chromium, page, "06-audit-fr")).toEqual([]);
    // Export with its proof: every record's hash recomputes, consecutive records link.
    const exported = (await page.evaluate(
      async (url: string) => (await fetch(url)).json(),
      `${CONSOLE}/api/v1/audit/export?format=json`,
    )) as {
      records: unknown[];
      proof: {
        records: number;
        hashes_ok: number;
        consecutive_links: number;
        links_ok: number;
        contiguous: boolean;
      };
    };
    expect(exported.proof).toMatchObject({
      contiguous: true,
      records: exported.records.length,
      hashes_ok: exported.records.length,
    });
    expect(exported.proof.links_ok).toBe(exported.proof.consecutive_links);

    await page.select("#language", "nl");
    await page.waitForFunction(
      () =>
        (globalThis as unknown as { document: { documentElement: { lang: string } } }).document
          .documentElement.lang === "nl",
    );
    expect(await text(page, "main h1")).toBe("Auditlog");
    await openSection(page, "status");
    await page.waitForSelector("#status-health");
    expect(await text(page, "main h1")).toBe("Status");
    expect(await text(page, "#status-trust")).toContain("Vertrouwenslijst");
    expect(await text(page, "#peers")).toMatch(new RegExp(`${org(1).serverName}: bereikbaar \\(\\d+ ms\\)`));
    expect(await capture(chromium, page, "07-status-nl")).toEqual([]);
    await openSection(page, "queue");
    await page.waitForSelector("#queue-empty");
    expect(await text(page, "#queue-empty")).toBe("Er wachten geen identiteitsbewijzen op beoordeling.");
    await page.select("#language", "en");
    await openSection(page, "audit");
    await page.waitForSelector("#audit");
    expect(await text(page, "main h1")).toBe("Audit log");
    await page.close();
  });

  it("refuses forged and signed-out sessions, CSRF attempts, other organisations' users, and users without a role", async () => {
    const a = org(0);
    const b = org(1);
    const bare = await fetch(`${a.clientUrl}${CONSOLE}`, { redirect: "manual" });
    expect([bare.status, bare.headers.get("location")]).toEqual([302, `${CONSOLE}/`]);
    const unknown = await fetch(`${a.clientUrl}${CONSOLE}/api/v1/nothing-here`, { method: "POST" });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toMatchObject({ errcode: "M_UNRECOGNIZED" });
    const forged = await consoleApi(a, "GET", "/session", { cookie: "medmesh_console=forged-value" });
    expect(forged).toMatchObject({ status: 401, body: { errcode: "M_UNKNOWN_TOKEN" } });
    expect(String(forged.body.error)).toMatch(/not valid/);
    expect((await consoleApi(a, "GET", "/users")).body).toMatchObject({
      errcode: "M_MISSING_TOKEN",
      error: "Not signed in to the console",
    });

    const s = await apiSignIn(a, admin.localpart, admin.password);
    expect(s.setCookie[0]).toMatch(/HttpOnly; SameSite=Strict/);
    // The pages' read calls, checked against console.yaml.
    for (const path of ["/status", "/reviews", "/users?q=carol", "/audit?action=console.&limit=5", "/roles"])
      expect((await consoleApi(a, "GET", path, { cookie: s.cookie })).status).toBe(200);
    const dave = await net().registerUser(a, "dave");
    const daveTarget = `/users/${encodeURIComponent(dave.userId)}/wipe`;
    // CSRF: no token, a wrong one, another site's Origin — refused, and Dave keeps his devices.
    const noToken = await consoleApi(a, "POST", daveTarget, {
      cookie: s.cookie,
      body: { confirm: dave.userId },
    });
    expect(noToken).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    expect(String(noToken.body.error)).toMatch(/CSRF/);
    expect(
      (
        await consoleApi(a, "POST", daveTarget, {
          cookie: s.cookie,
          csrf: "guess",
          body: { confirm: dave.userId },
        })
      ).status,
    ).toBe(403);
    const crossSite = await consoleApi(a, "POST", daveTarget, {
      cookie: s.cookie,
      csrf: s.csrf,
      origin: "https://evil.example",
      body: { confirm: dave.userId },
    });
    expect(String(crossSite.body.error)).toMatch(/Cross-site/);
    // Unconfirmed: nothing done either.
    expect(
      (await consoleApi(a, "POST", daveTarget, { cookie: s.cookie, csrf: s.csrf, body: {} })).status,
    ).toBe(400);
    expect((await mx(dave, "GET", "/_matrix/client/v3/account/whoami")).status).toBe(200);

    // A's admin acting on B's user: refused, B's user unaffected.
    const erin = await net().registerUser(b, "erin");
    const cross = await consoleApi(a, "POST", `/users/${encodeURIComponent(erin.userId)}/wipe`, {
      cookie: s.cookie,
      csrf: s.csrf,
      body: { confirm: erin.userId },
    });
    expect(cross).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    expect(String(cross.body.error)).toContain("belongs to another organisation");
    expect((await mx(erin, "GET", "/_matrix/client/v3/account/whoami")).status).toBe(200);
    // B's user cannot sign in to A's console with B's token; A's user without a role cannot either.
    const foreign = await consoleApi(a, "POST", "/session", { bearer: erin.accessToken });
    expect(foreign).toMatchObject({ status: 401, body: { errcode: "M_UNKNOWN_TOKEN" } });
    const noRole = await consoleApi(a, "POST", "/session", { bearer: dave.accessToken });
    expect(noRole).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    expect(String(noRole.body.error)).toContain("has no role");
    expect(noRole.setCookie).toEqual([]);

    // Signed out: the old cookie is worth nothing.
    expect((await consoleApi(a, "DELETE", "/session", { cookie: s.cookie, csrf: s.csrf })).status).toBe(200);
    const after = await consoleApi(a, "GET", "/audit", { cookie: s.cookie });
    expect(after).toMatchObject({ status: 401, body: { errcode: "M_UNKNOWN_TOKEN" } });
  });

  it("medmesh admin scripts the same API: reviews, users, audit export, verify chain, wipe", async () => {
    const a = org(0);
    const cli = async (...args: string[]) => {
      let out = "";
      let err = "";
      const code = await runAdminCli(["--url", a.clientUrl, "--user", admin.localpart, ...args], {
        stdout: (s) => (out += s),
        stderr: (s) => (err += s),
        password: () => admin.password,
      });
      return { code, out, err };
    };
    expect(JSON.parse((await cli("whoami")).out)).toMatchObject({ user_id: admin.userId, role: "org_admin" });
    expect(JSON.parse((await cli("reviews")).out)).toEqual({ reviews: [] });
    const users = JSON.parse((await cli("users", "--q", "carol")).out) as { users: { user_id: string }[] };
    expect(users.users.map((u) => u.user_id)).toEqual([`@carol:${a.serverName}`]);
    const exported = JSON.parse((await cli("audit", "--action", "console.remote_wipe")).out) as {
      records: { object: string }[];
      proof: { hashes_ok: number; contiguous: boolean };
    };
    expect(exported.records.map((r) => r.object)).toEqual([bram.userId]);
    expect(exported.proof).toMatchObject({ hashes_ok: 1, contiguous: false });
    const verified = await cli("verify-chain");
    expect(verified.code).toBe(0);
    expect(verified.out).toContain('"ok": true');
    const frank = await net().registerUser(a, "frank");
    const unconfirmed = await cli("wipe", frank.userId);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.err).toContain("--yes");
    expect((await mx(frank, "GET", "/_matrix/client/v3/account/whoami")).status).toBe(200);
    expect((await cli("wipe", frank.userId, "--yes")).code).toBe(0);
    expect((await mx(frank, "GET", "/_matrix/client/v3/account/whoami")).status).toBe(401);
    const foreign = await cli("wipe", `@erin:${org(1).serverName}`, "--yes");
    expect(foreign.code).toBe(1);
    expect(foreign.err).toContain("belongs to another organisation");
  });
});
