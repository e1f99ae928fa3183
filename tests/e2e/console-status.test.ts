import { MsgType, type MatrixClient } from "matrix-js-sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RunningOrganisation } from "@medmesh/deploy";
import { TestVendor } from "../harness/interop-vendor.ts";
import {
  adminApi,
  startChromium,
  useTestNetwork,
  waitForRoomEvent,
  waitUntil,
  type HeadlessChromium,
} from "../harness/index.ts";
import {
  apiSignIn,
  capture,
  consoleApi,
  openSection,
  pageSignIn,
  registerWithPassword,
  text,
} from "./console-helpers.ts";

// The console's status page beyond trust and health: the bridge's vendors, queues and dead
// letters with a retry, the charts of queue depth and sweep durations, and a session that expires
// while the page is open (docs/console.md). Real Chromium, real Synapse, a protocol-level vendor.
const vendor = new TestVendor();
await vendor.start();
afterAll(() => vendor.stop());

const net = useTestNetwork({
  name: "console-status",
  organisations: 1,
  organisationSettings: { 0: { bridge_vendors: [vendor.setting] } },
});
const org = (): RunningOrganisation => net().orgs[0]!;
const policyStore = () => org().services.find((s) => s.name === "policy-module")!.store.knex;

let chromium: HeadlessChromium;
beforeAll(async () => {
  chromium = await startChromium("console-status");
});
afterAll(() => chromium.close());

interface QueueLetter {
  seq: number;
  vendor: string;
  conversation_id: string;
}

describe("the console's status page: bridge, charts, expiry", () => {
  let admin: Awaited<ReturnType<typeof registerWithPassword>>;
  let client: MatrixClient;
  let portal: string;

  it("shows a refused delivery as a dead letter; the org admin's retry delivers it, audited", async () => {
    const a = org();
    admin = await registerWithPassword(a, "statusadmin", true);
    vendor.connect(a.bridgeInteropUrl, a.paths.bridgeSigningKey);
    const alice = await net().registerUser(a, "alice");
    client = await net().client(alice);
    portal = await vendor.openConversation(
      { conversation_id: "c-status", kind: "direct", creator: "anna", members: ["anna", alice.userId] },
      client,
    );
    await vendor.send({
      type: "message",
      conversation_id: "c-status",
      message_id: "m1",
      sender: "anna",
      text: "hello",
    });
    await waitForRoomEvent(client, portal, (e) => e.getContent().body === "hello", {
      description: "the vendor's message in the portal",
    });
    vendor.refuse = true;
    await client.sendMessage(portal, { msgtype: MsgType.Text, body: "refused at first" });

    const s = await apiSignIn(a, admin.localpart, admin.password);
    const dead = await waitUntil(async () => {
      const r = await consoleApi(a, "GET", "/bridge", { cookie: s.cookie });
      const letters = (r.body.dead_letters as { outbound: QueueLetter[] } | undefined)?.outbound ?? [];
      return letters.length > 0 ? r.body : undefined;
    }, "the refused delivery as a dead letter on the console's bridge API");
    expect(dead.vendors).toEqual([
      {
        id: vendor.id,
        configured: true,
        outbound: { pending: 0, failed: 1, oldest_pending_at: null },
        inbound: { pending: 0, failed: 0, oldest_pending_at: null },
      },
    ]);
    const [letter] = (dead.dead_letters as { outbound: QueueLetter[] }).outbound;
    expect(letter).toMatchObject({ vendor: vendor.id, conversation_id: "c-status" });
    expect(JSON.stringify(dead)).not.toContain("refused at first"); // counts and metadata, no content
    // The bridge samples its queues once a minute; its first sample was taken at its start.
    expect((dead.samples as unknown[]).length).toBeGreaterThan(0);

    vendor.refuse = false;
    const page = await chromium.page("en-GB");
    await pageSignIn(page, a, admin.localpart, admin.password);
    await openSection(page, "status");
    await page.waitForSelector("#dead-letters");
    expect(await text(page, "#bridge-vendors")).toContain(vendor.id);
    expect(await text(page, "#bridge-vendors")).toContain("failed 1");
    expect(await text(page, "#health-bridge")).toMatch(/^Bridge: up \(\d+ ms\)$/);
    const chartName = await page.$eval("#status-bridge svg[role=img]", (e) =>
      (e as unknown as { getAttribute(n: string): string | null }).getAttribute("aria-label"),
    );
    expect(chartName).toMatch(/^Queue depth, last 24 hours: \d+ samples; waiting now 0/);
    expect(await capture(chromium, page, "01-status-bridge")).toEqual([]);
    await page.click(`#dead-letters li[data-kind=outbound][data-id="${String(letter?.seq)}"] button`);
    await waitUntil(
      async () => ((await text(page, "#bridge-outcome")) === "Queued again." ? true : undefined),
      "the retry's outcome on the page",
    );
    await vendor.delivered((e) => e.text === "refused at first", "the retried message at the vendor");
    await openSection(page, "audit"); // and back: the status page reads the bridge again
    await openSection(page, "status");
    await page.waitForSelector("#no-dead-letters");
    await page.close();

    const audit = await policyStore()("audit_log")
      .where({ action: "console.bridge_retry" })
      .select<{ actor: string; object: string; outcome: string; details: Record<string, unknown> }[]>(
        "actor",
        "object",
        "outcome",
        "details",
      );
    expect(audit).toEqual([
      {
        actor: admin.userId,
        object: String(letter?.seq),
        outcome: "retried",
        details: { role: "org_admin", kind: "outbound" },
      },
    ]);
  });

  it("a reviewer sees the bridge without a retry button, and the API refuses the retry (403)", async () => {
    const a = org();
    const rita = await registerWithPassword(a, "ritastatus");
    const s = await apiSignIn(a, admin.localpart, admin.password);
    const granted = await consoleApi(a, "PUT", `/roles/${encodeURIComponent(rita.userId)}`, {
      cookie: s.cookie,
      csrf: s.csrf,
      body: { role: "reviewer" },
    });
    expect(granted.status).toBe(200);
    const page = await chromium.page("nl-BE");
    await pageSignIn(page, a, rita.localpart, rita.password);
    await openSection(page, "status");
    await page.waitForSelector("#bridge-vendors");
    expect(await text(page, "#st-bridge")).toBe("Brug");
    expect(await page.$("#status-bridge button")).toBeNull();
    await page.close();
    const r = await apiSignIn(a, rita.localpart, rita.password);
    const refused = await consoleApi(a, "POST", "/bridge/dead-letters/outbound/1/retry", {
      cookie: r.cookie,
      csrf: r.csrf,
    });
    expect(refused).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    expect(String(refused.body.error)).toContain("bridge.retry");
    const bad = await consoleApi(a, "POST", "/bridge/dead-letters/sideways/1/retry", {
      cookie: s.cookie,
      csrf: s.csrf,
    });
    expect(bad).toMatchObject({ status: 400, body: { errcode: "M_INVALID_PARAM" } });
    const [{ n }] = (await policyStore()("audit_log")
      .where({ action: "console.bridge_retry" })
      .count("* as n")) as [{ n: number | string }];
    expect(Number(n)).toBe(1); // the refused and the malformed retry left nothing behind
  });

  it("charts the sweeps' durations and says what the latest deleted", async () => {
    const a = org();
    for (let i = 0; i < 2; i++) {
      const res = await adminApi(a, "policy-module").fetch("/_medmesh/admin/v1/retention/sweep", {
        method: "POST",
      });
      expect(res.status).toBe(200);
    }
    const s = await apiSignIn(a, admin.localpart, admin.password);
    const status = await consoleApi(a, "GET", "/status", { cookie: s.cookie });
    const sweeps = (status.body.retention as { sweeps: { seconds: number; redacted: number }[] }).sweeps;
    expect(sweeps.length).toBeGreaterThanOrEqual(2);
    expect(sweeps.every((x) => x.seconds >= 0 && x.redacted === 0)).toBe(true);
    const page = await chromium.page("fr-BE");
    await pageSignIn(page, a, admin.localpart, admin.password);
    await openSection(page, "status");
    await page.waitForSelector("#last-sweep");
    expect(await text(page, "#last-sweep")).toMatch(/^Dernière purge .*: \d+\.\d+ s ; effacés 0/);
    const chartName = await page.$eval("section[aria-labelledby=st-retention] svg[role=img]", (e) =>
      (e as unknown as { getAttribute(n: string): string | null }).getAttribute("aria-label"),
    );
    expect(chartName).toMatch(/^Durée des purges: \d+ dernières purges/);
    expect(await capture(chromium, page, "02-status-sweeps-fr")).toEqual([]);
    await page.close();
  });

  it("a session that expires while the page is open sends the admin back to sign-in, saying why", async () => {
    const a = org();
    const outside = await apiSignIn(a, admin.localpart, admin.password);
    const page = await chromium.page("en-GB");
    await pageSignIn(page, a, admin.localpart, admin.password);
    await openSection(page, "status");
    await page.waitForSelector("#status-health");
    // Both of the page's reads done: a read still on its way would meet the expiry first and
    // replace the page (with its nav link) before the click below.
    await page.waitForSelector("#bridge-vendors");
    // Time passes: the session's idle expiry is behind it (as after 30 minutes without a request).
    const ended = await policyStore()("console_sessions")
      .where({ user_id: admin.userId })
      .update({ expires_at: new Date(Date.now() - 1000) });
    expect(ended).toBeTruthy();
    await openSection(page, "audit");
    await page.waitForSelector("#sign-in");
    expect(await text(page, "[role=alert]")).toBe("Your session has ended; sign in again.");
    expect(await capture(chromium, page, "03-session-expired")).toEqual([]);
    // Outside the page the answer says why; afterwards the session is gone for good.
    const expired = await consoleApi(a, "GET", "/status", { cookie: outside.cookie });
    expect(expired).toMatchObject({ status: 401, body: { errcode: "M_UNKNOWN_TOKEN" } });
    expect(String(expired.body.error)).toBe("Your console session has expired; sign in again");
    const again = await consoleApi(a, "GET", "/status", { cookie: outside.cookie });
    expect(again).toMatchObject({ status: 401, body: { errcode: "M_UNKNOWN_TOKEN" } });
    // Signing in again on the same page opens a new session.
    await page.type("#user", admin.localpart);
    await page.type("#password", admin.password);
    await page.click("#sign-in button[type=submit]");
    await page.waitForSelector("header nav");
    expect(await page.$("[role=alert]")).toBeNull();
    await page.close();
  });
});
