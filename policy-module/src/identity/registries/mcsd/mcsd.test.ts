import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAuditLog, createLogger, createStore, type Store } from "@medmesh/common";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { IDENTITY_MIGRATIONS } from "../../migrations.ts";
import { verificationRecords } from "../../records.ts";
import { createVerifier } from "../../verifier.ts";
import { createRegistries, RegistriesConfigSchema } from "../index.ts";
import { RegistryUnavailableError } from "../types.ts";
import { McsdFeedError, parseMcsdFeed } from "./feed.ts";
import { createMcsdRegistry } from "./registry.ts";
import {
  BIG_SYSTEM,
  mcsdBundle,
  startMcsdTestServer,
  type McsdTestPractitioner,
  type McsdTestServer,
} from "./test-server.ts";

const MARIA: McsdTestPractitioner = {
  id: "p1",
  number: "19012345601",
  family: "Jansen-de Vries",
  maiden: "de Vries",
  given: ["Maria"],
  qualification: { code: "01.015", display: "physician" },
  specialty: "cardiology",
};
const OUD: McsdTestPractitioner = {
  id: "p2",
  number: "29012345602",
  family: "Oud",
  given: ["Piet"],
  active: false,
  qualification: { code: "30.000", display: "nurse" },
};
const ENDED: McsdTestPractitioner = {
  id: "p3",
  number: "39012345603",
  family: "Smit",
  given: ["Sara"],
  qualification: { code: "17.000", display: "pharmacist", end: "2020-01-01" },
};
const PEOPLE = [MARIA, OUD, ENDED];
const silent = createLogger("test", "silent");
const feedText = (p: readonly McsdTestPractitioner[] = PEOPLE) => JSON.stringify(mcsdBundle(p));

describe("reading an mCSD feed", () => {
  it("reads number, names (official and maiden), profession, specialisms and status", () => {
    const { records, practitioners } = parseMcsdFeed(feedText(), BIG_SYSTEM, "BIG");
    expect(practitioners).toBe(3);
    expect(records.get(MARIA.number)).toEqual({
      registry: "BIG",
      number: MARIA.number,
      name: {
        full: "Maria Jansen-de Vries",
        surname: "de Vries",
        given: "Maria",
        alternates: [{ surname: "Jansen-de Vries" }],
      },
      profession: "physician",
      specialisms: ["cardiology"],
      status: "active",
    });
    expect(records.get(OUD.number)?.status).toBe("struck_off"); // active: false
    expect(records.get(ENDED.number)?.status).toBe("struck_off"); // the qualification ended
  });

  it("ignores another register's practitioners and marks a number listed twice", () => {
    const other = parseMcsdFeed(feedText(), "urn:oid:2.16.528.1.1007.3.1", "UZI");
    expect(other.records.size).toBe(0);
    const twice = parseMcsdFeed(feedText([MARIA, { ...MARIA, id: "p9" }]), BIG_SYSTEM, "BIG");
    expect(twice.ambiguous.has(MARIA.number)).toBe(true);
  });

  it.each([
    ["not JSON", '{"resourceType": "Bundle", "entry": [', /not valid JSON/],
    ["not a Bundle", JSON.stringify({ resourceType: "Practitioner" }), /not a FHIR Bundle/],
    [
      "a Practitioner of the wrong shape",
      JSON.stringify({
        resourceType: "Bundle",
        entry: [{ resource: { resourceType: "Practitioner", name: "x" } }],
      }),
      /entry 1: a Practitioner that does not match FHIR R4/,
    ],
    [
      "a Practitioner without a family name",
      JSON.stringify({
        resourceType: "Bundle",
        entry: [
          {
            resource: {
              resourceType: "Practitioner",
              identifier: [{ system: BIG_SYSTEM, value: "19012345601" }],
              name: [{ given: ["X"] }],
            },
          },
        ],
      }),
      /entry 1: a Practitioner without a family name/,
    ],
  ])("refuses %s, naming the entry and never a number", (_what, text, reason) => {
    expect(() => parseMcsdFeed(text, BIG_SYSTEM, "BIG")).toThrow(McsdFeedError);
    expect(() => parseMcsdFeed(text, BIG_SYSTEM, "BIG")).toThrow(reason);
    try {
      parseMcsdFeed(text, BIG_SYSTEM, "BIG");
    } catch (err) {
      expect((err as Error).message).not.toContain("19012345601");
    }
  });
});

describe("the mCSD registry from a file", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "medmesh-mcsd-"));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  const open = (file: string, maxBytes = 1024 * 1024) =>
    createMcsdRegistry({
      registry: "BIG",
      system: BIG_SYSTEM,
      source: { file },
      refreshMs: 3_600_000,
      timeoutMs: 1000,
      maxBytes,
      log: silent,
    });

  it("answers from the file, re-reads it when it changes, and a broken version leaves checks pending", async () => {
    const file = join(dir, "feed.json");
    writeFileSync(file, feedText([MARIA]));
    const big = open(file);
    expect((await big.lookup(MARIA.number))?.name.surname).toBe("de Vries");
    expect(await big.lookup(OUD.number)).toBeUndefined();
    writeFileSync(file, feedText([MARIA, OUD]));
    expect((await big.lookup(OUD.number))?.status).toBe("struck_off");
    writeFileSync(file, '{"resourceType": "Bundle", "entry": [ {"resource": ');
    await expect(big.lookup(MARIA.number)).rejects.toThrow(/not valid JSON.*the check stays pending/);
    writeFileSync(file, feedText([MARIA]));
    expect((await big.lookup(MARIA.number))?.status).toBe("active");
  });

  it("a missing or too large file is a pending check with the reason, not a crash", async () => {
    await expect(open(join(dir, "nope.json")).lookup(MARIA.number)).rejects.toMatchObject({
      kind: "fault",
      message: expect.stringMatching(/cannot be read/) as unknown,
    });
    const file = join(dir, "big.json");
    writeFileSync(file, feedText());
    await expect(open(file, 100).lookup(MARIA.number)).rejects.toThrow(/max_answer_bytes/);
  });
});

describe("the mCSD registry from a URL", () => {
  let server: McsdTestServer;
  beforeAll(async () => {
    server = await startMcsdTestServer(PEOPLE);
  });
  afterAll(() => server.stop());
  const open = (refreshMs = 3_600_000, retryMs = 0) =>
    createMcsdRegistry({
      registry: "BIG",
      system: BIG_SYSTEM,
      source: { url: server.url },
      refreshMs,
      retryMs,
      timeoutMs: 500,
      maxBytes: 1024 * 1024,
      log: silent,
    });

  it("fetches the feed once, and again when it is due", async () => {
    server.setMode("normal");
    const before = server.requests;
    const big = open();
    await Promise.all([big.lookup(MARIA.number), big.lookup(OUD.number), big.lookup(ENDED.number)]);
    expect(server.requests - before).toBe(1);
    const due = open(0);
    await due.lookup(MARIA.number);
    server.setPractitioners([MARIA, { ...OUD, active: true }]);
    expect((await due.lookup(OUD.number))?.status).toBe("active");
    server.setPractitioners(PEOPLE);
  });

  it.each([
    ["malformed", /not valid JSON/, "malformed"],
    ["not-a-bundle", /not a FHIR Bundle/, "malformed"],
    ["huge", /max_answer_bytes/, "malformed"],
    ["http500", /HTTP 500/, "http"],
    ["slow", /no answer within 500 ms/, "timeout"],
  ] as const)(
    "a feed answering %s: the check stays pending with the reason, and recovers",
    async (mode, reason, kind) => {
      server.setMode(mode);
      const big = open(3_600_000, 0);
      const rss = process.memoryUsage().rss;
      const err = await big.lookup(MARIA.number).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(RegistryUnavailableError);
      expect(err).toMatchObject({ kind, message: expect.stringMatching(reason) as unknown });
      // 50 MiB offered, at most max_answer_bytes read.
      if (mode === "huge") expect(process.memoryUsage().rss - rss).toBeLessThan(40 * 1024 * 1024);
      server.setMode("normal");
      expect((await big.lookup(MARIA.number))?.status).toBe("active");
    },
  );
});

describe("the mCSD plug-in with the real verifier", () => {
  let store: Store;
  let server: McsdTestServer;
  beforeAll(async () => {
    store = await createStore(
      { type: "pglite", data_dir: mkdtempSync(join(tmpdir(), "medmesh-mcsd-store-")) },
      { migrations: IDENTITY_MIGRATIONS },
    );
    server = await startMcsdTestServer(PEOPLE);
  });
  afterAll(async () => {
    await server.stop();
    await store.close();
  });

  it("verifies by the birth or the partner name, rejects the struck off, and a broken feed leaves checks pending", async () => {
    const config = RegistriesConfigSchema.parse({
      mcsd: { registry: "BIG", system: BIG_SYSTEM, url: server.url, refresh_seconds: 0.001 },
    });
    const verifier = createVerifier({
      serverName: "nl.example",
      records: verificationRecords(store.knex),
      registries: createRegistries(config, { log: silent }),
      audit: createAuditLog(store.knex),
      log: silent,
      validityMs: 3_600_000,
      requireDocument: false,
    });
    const claim = (user: string, number: string, name: string) =>
      verifier.start(`@${user}:nl.example`, { registry: "big", number, claimed_name: name });
    expect(await claim("maria", MARIA.number, "M. Jansen-de Vries")).toMatchObject({
      status: "verified",
      profession: "physician",
    });
    expect(await claim("piet", OUD.number, "P. Oud")).toMatchObject({
      status: "rejected",
      reason: expect.stringMatching(/struck off/) as unknown,
    });
    expect(await claim("sara", ENDED.number, "S. Bakker")).toMatchObject({ status: "rejected" });
    server.setMode("malformed");
    await new Promise((r) => setTimeout(r, 5));
    expect(await claim("sara", ENDED.number, "S. Smit")).toMatchObject({
      status: "pending",
      reason: expect.stringMatching(/could not be reached \(malformed\)/) as unknown,
    });
    server.setMode("normal");
  });
});
