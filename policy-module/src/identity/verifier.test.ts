import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createAuditLog,
  createLogger,
  createStore,
  electedLeader,
  type Leader,
  type Store,
} from "@medmesh/common";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verificationConversation } from "./bot-commands.ts";
import { IDENTITY_MIGRATIONS } from "./migrations.ts";
import { identityDocuments, verificationRecords } from "./records.ts";
import { createReverifier, REVERIFY_JOB } from "./reverify.ts";
import { createRizivRegistry, rizivCheckDigits } from "./registries/riziv/client.ts";
import { startRizivTestServer, type RizivTestServer } from "./registries/riziv/test-server.ts";
import { createVerifier } from "./verifier.ts";
import { Registry } from "prom-client";

// A physician's RIZIV number with correct check digits (base 112345, qualification 000).
const number = (base: string, q = "000"): string => `${base}${rizivCheckDigits(base).mod97}${q}`;
const MARIE = number("112345");
// One number binds one account: the cases that are about other things use numbers of their own.
const [SSO, TYPED, SELF, BOT, ANN, CARL] = ["112346", "112347", "112348", "112349", "112350", "112351"].map(
  (b) => number(b),
) as [string, string, string, string, string, string];

describe("verification workflow (store, audit, registry adapter)", () => {
  let store: Store;
  let riziv: RizivTestServer;
  const practitioner = (status: string, n = MARIE) => ({
    number: n,
    firstName: "Marie",
    lastName: "Dubois",
    profession: "physician",
    qualification: "000",
    specialisms: [],
    status,
  });

  beforeAll(async () => {
    store = await createStore(
      { type: "pglite", data_dir: mkdtempSync(join(tmpdir(), "medmesh-identity-")) },
      { migrations: IDENTITY_MIGRATIONS },
    );
    riziv = await startRizivTestServer(
      [MARIE, SSO, TYPED, SELF, BOT, ANN, CARL].map((n) => practitioner("active", n) as never),
      { delayMs: 2000 },
    );
  });
  afterAll(async () => {
    await riziv.stop();
    await store.close();
  });

  // One lease holder for the file's re-verification runs (a second would wait for the first's lease).
  let leader: Promise<Leader> | undefined;
  const reverifyLeader = (): Promise<Leader> =>
    (leader ??= electedLeader(store, REVERIFY_JOB, createLogger("test", "silent")));

  const setup = (requireDocument = false, proven: Record<string, string> = {}) => {
    const records = verificationRecords(store.knex);
    const audit = createAuditLog(store.knex);
    const changes: string[] = [];
    const verifier = createVerifier({
      serverName: "be.example",
      records,
      registries: new Map([["RIZIV", createRizivRegistry({ url: riziv.url, timeoutMs: 500 })]]),
      audit,
      log: createLogger("test", "silent"),
      validityMs: 3_600_000,
      onChange: (r) => changes.push(`${r.user_id}:${r.status}`),
      requireDocument,
      documents: identityDocuments(store.knex),
      identityProvider: (userId) => Promise.resolve(proven[userId]),
      organisationName: "Hôpital B",
    });
    return { records, audit, verifier, changes };
  };

  it("verifies, audits without the registration number, and revokes on re-verification", async () => {
    expect(MARIE).toHaveLength(11);
    const { verifier, audit, changes, records } = setup();
    const outcome = await verifier.start("@marie:be.example", {
      registry: "riziv",
      number: MARIE,
      claimed_name: "M. Dubois",
    });
    expect(outcome).toMatchObject({ status: "verified", profession: "physician" });
    expect(changes).toEqual(["@marie:be.example:verified"]);
    const entries = await audit.find({ object: "@marie:be.example" });
    expect(entries.map((e) => [e.action, e.outcome])).toEqual([["identity.check", "verified"]]);
    expect(JSON.stringify(entries)).not.toContain(MARIE);
    expect((await records.get("@marie:be.example"))?.registration_number).toBe(MARIE);

    // Still pending-free: a timeout during re-verification keeps status until expiry, then revokes.
    riziv.setMode("slow");
    const reverifier = createReverifier({
      verifier,
      records,
      leader: await reverifyLeader(),
      knex: store.knex,
      documents: store.documents,
      config: { schedule: "0 3 * * *", concurrency: 2, rate_per_second: 100 },
      log: createLogger("test", "silent"),
      metrics: new Registry(),
    });
    expect(await reverifier.run()).toMatchObject({ ran: true, checked: 1, unavailable: 1, revoked: 0 });
    expect((await records.get("@marie:be.example"))?.status).toBe("verified");
    const late = new Date(Date.now() + 2 * 3_600_000); // past the expiry, registry still down
    const after = await verifier.check((await records.get("@marie:be.example"))!, verifier.actor, late);
    expect(after).toMatchObject({
      status: "revoked",
      reason: expect.stringMatching(/could not be reached/) as unknown,
    });
    riziv.setMode("normal");
    expect(await audit.verify()).toMatchObject({ ok: true });
  });

  it("refuses bad numbers before asking the registry, and stores nothing", async () => {
    const { verifier, records } = setup();
    const bad = `${MARIE.slice(0, 6)}${MARIE[6] === "9" ? "0" : "9"}${MARIE.slice(7)}`; // check digit off
    await expect(
      verifier.start("@x:be.example", { registry: "RIZIV", number: bad, claimed_name: "X" }),
    ).rejects.toThrow(/check digits/);
    expect(await records.get("@x:be.example")).toBeUndefined();
    await expect(
      verifier.start("@x:be.example", { registry: "BIG", number: "1", claimed_name: "X" }),
    ).rejects.toThrow(/Unknown registry BIG/);
  });

  it("rejects a name that does not match the registration", async () => {
    const { verifier } = setup();
    expect(
      await verifier.start("@y:be.example", {
        registry: "RIZIV",
        number: MARIE,
        claimed_name: "P. Janssens",
      }),
    ).toMatchObject({
      status: "rejected",
    });
  });

  it("checks a number the organisation's identity provider asserts like a typed one, identity proven", async () => {
    // The organisation wants ID documents from self-registered clinicians; its SSO proves identity.
    const { verifier, records, audit, changes } = setup(true, { "@sso-typed:be.example": "oidc-b" });
    const user = "@sso:be.example";
    const claimed = { registry: "RIZIV", number: SSO, claimed_name: "Marie Dubois" };
    expect(await verifier.fromOrganisation(user, claimed, "oidc-b")).toMatchObject({ status: "verified" });
    expect(await verifier.status(user)).toMatchObject({
      status: "verified",
      identity_proven_by: "Hôpital B",
    });
    expect((await records.get(user))?.identity_provider).toBe("oidc-b");
    // The same claims at the next login: nothing asked again.
    const checkedAt = (await records.get(user))?.last_checked_at;
    await verifier.fromOrganisation(user, claimed, "oidc-b");
    expect((await records.get(user))?.last_checked_at).toEqual(checkedAt);
    expect(changes.filter((c) => c.startsWith(user))).toEqual([`${user}:verified`]);

    // A number typed by an SSO account (no claim configured): proven as well, no document asked.
    expect(
      await verifier.start("@sso-typed:be.example", { ...claimed, number: TYPED, claimed_name: "M. Dubois" }),
    ).toMatchObject({ status: "verified" });
    // A self-registered one waits for the document.
    expect(await verifier.start("@self:be.example", { ...claimed, number: SELF })).toMatchObject({
      status: "awaiting_document",
    });
    // The SSO account's number is bound to it: another account's claim is refused.
    await expect(verifier.start("@other:be.example", claimed)).rejects.toMatchObject({
      errcode: "ORG.MEDMESH.NUMBER_IN_USE",
    });
    expect((await verifier.status("@self:be.example"))?.identity_proven_by).toBeUndefined();

    // A claim that is not a valid number is a rejection with a reason, stored, not an error.
    const bad = await verifier.fromOrganisation(
      "@sso-bad:be.example",
      { ...claimed, number: "12" },
      "oidc-b",
    );
    expect(bad).toMatchObject({
      status: "rejected",
      reason: expect.stringMatching(
        /Hôpital B's identity provider gives is not a valid RIZIV number/,
      ) as unknown,
    });
    expect((await records.get("@sso-bad:be.example"))?.status).toBe("rejected");
    const entries = await audit.find({ object: user });
    expect(entries.map((e) => e.details)).toContainEqual(
      expect.objectContaining({ identity_provider: "oidc-b" }),
    );
  });

  it("talks a user through verification in a direct chat with the bot", async () => {
    const { verifier } = setup(true);
    const chat = verificationConversation({
      verifier,
      displayName: (u) => Promise.resolve(u === "@marie2:be.example" ? "Marie Dubois" : undefined),
      idDocument: { types: ["image/jpeg"], maxBytes: 1024 },
    });
    const text = (sender: string, body: string) =>
      chat({ kind: "text", sender, roomId: "!dm", eventId: "$e", body });
    const file = (sender: string, contentType: string, data: Buffer) =>
      chat({
        kind: "file",
        sender,
        eventId: "$f",
        roomId: "!dm",
        msgtype: "m.image",
        name: "id.jpg",
        contentType,
        size: data.length,
        download: () => Promise.resolve(data),
      });

    expect(await text("@marie2:be.example", "hello")).toMatch(/verify BIG/);
    expect(await text("@marie2:be.example", "status")).toMatch(/not asked to be verified/);
    expect(await text("@marie2:be.example", "verify RIZIV")).toMatch(/registry and your number/);
    const bad = `${MARIE.slice(0, 6)}${MARIE[6] === "9" ? "0" : "9"}${MARIE.slice(7)}`;
    expect(await text("@marie2:be.example", `verify RIZIV ${bad}`)).toMatch(
      /could not start the check: .*check digits/,
    );
    expect(await text("@nameless:be.example", `verify RIZIV ${MARIE}`)).toMatch(/name as the registry/);
    expect(await file("@marie2:be.example", "image/jpeg", Buffer.from("x"))).toMatch(/Nothing was stored/);

    // Name from the display name; the organisation asks for an ID document.
    expect(await text("@marie2:be.example", `verify riziv ${SSO}`)).toMatch(
      /could not start the check: This registration number is already bound to another account/,
    );
    expect(await text("@marie2:be.example", `verify riziv ${BOT.slice(0, 5)} ${BOT.slice(5)}`)).toMatch(
      /checked your RIZIV registration[\s\S]*send me a photo or scan.*image\/jpeg/,
    );
    expect(await file("@marie2:be.example", "application/zip", Buffer.from("x"))).toMatch(
      /cannot take a application\/zip file/,
    );
    expect(await file("@marie2:be.example", "image/jpeg", Buffer.alloc(2048))).toMatch(/too large/);
    expect(await verifier.status("@marie2:be.example")).toMatchObject({ status: "awaiting_document" });
    expect(await file("@marie2:be.example", "image/jpeg", Buffer.from("jpeg"))).toMatch(
      /with your organisation's admin/,
    );
    expect(await text("@marie2:be.example", "status")).toMatch(/for review/);
    await verifier.review("@marie2:be.example", true, "", "@admin:be.example");
    expect(await text("@marie2:be.example", "STATUS")).toMatch(/verified as physician until/);
  });

  it("a deactivated account gives up its number: when Synapse reports it, and when the report never came", async () => {
    const { verifier, records, audit, changes } = setup();
    const ask = (user: string, n: string) =>
      verifier.start(user, { registry: "riziv", number: n, claimed_name: "M. Dubois" });
    expect(await ask("@ann:be.example", ANN)).toMatchObject({ status: "verified" });
    expect(await ask("@carl:be.example", CARL)).toMatchObject({ status: "verified" });
    const releases = async (user: string) =>
      (await audit.find({ object: user })).filter((e) => e.action === "identity.release");

    // Synapse's report: revoked at once, once.
    const released = await verifier.deactivated("@ann:be.example", false);
    expect(released).toMatchObject({
      status: "revoked",
      reason: expect.stringMatching(/deactivated/) as unknown,
    });
    expect(await verifier.deactivated("@ann:be.example", false)).toBeUndefined();
    expect((await releases("@ann:be.example")).map((e) => e.details)).toEqual([
      expect.objectContaining({ cause: "account_deactivated", by_admin: false }),
    ]);
    expect(changes).toContain("@ann:be.example:revoked");
    expect(await ask("@ann2:be.example", ANN)).toMatchObject({ status: "verified" }); // the number is free

    // No report (the policy module was down): the run releases the account without asking the
    // registry, which answers 500 now — a look-up would have left Carl verified and "unavailable".
    riziv.setMode("http500");
    const reverifier = createReverifier({
      verifier,
      records,
      leader: await reverifyLeader(),
      knex: store.knex,
      documents: store.documents,
      config: { schedule: "0 3 * * *", concurrency: 2, rate_per_second: 100 },
      deactivatedAccounts: () => Promise.resolve(new Set(["@carl:be.example"])),
      log: createLogger("test", "silent"),
      metrics: new Registry(),
    });
    const before = (await records.get("@carl:be.example"))!;
    await reverifier.run();
    riziv.setMode("normal");
    const carl = await records.get("@carl:be.example");
    expect(carl).toMatchObject({ status: "revoked", attempts: before.attempts });
    expect(carl?.last_checked_at).toEqual(before.last_checked_at);
    expect((await releases("@carl:be.example")).map((e) => e.details)).toEqual([
      expect.objectContaining({ cause: "account_deactivated", found_by: "reverify" }),
    ]);
    const reverified = (await audit.find({ object: "@carl:be.example" })).filter(
      (e) => e.action === "identity.reverify",
    );
    expect(reverified.map((e) => e.outcome)).toEqual(["revoked"]);
    expect(await ask("@carl2:be.example", CARL)).toMatchObject({ status: "verified" });
    expect(await audit.verify()).toMatchObject({ ok: true });
  });
});
