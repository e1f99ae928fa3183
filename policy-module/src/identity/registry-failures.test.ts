import { mkdtempSync, writeFileSync } from "node:fs";
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
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verificationRecords } from "./records.ts";
import { createBigRegistry } from "./registries/big/client.ts";
import { startBigTestServer, type BigTestMode, type BigTestServer } from "./registries/big/test-server.ts";
import { openRegistryExtract } from "./registries/extract/extract.ts";
import type { RegistryAdapter } from "./registries/types.ts";
import { createReverifier, REVERIFY_JOB } from "./reverify.ts";
import { IDENTITY_MIGRATIONS } from "./migrations.ts";
import { createVerifier } from "./verifier.ts";

// A registry that misbehaves never stops the checks of other clinicians, nor the service: the
// check stays pending, says why, and the next clinicians are checked.
const clinician = (n: number) => ({
  number: `${String(n)}9012345601`.slice(0, 11),
  initials: "A.",
  surname: `Arts${String(n)}`,
  mailingName: `A. Arts${String(n)}`,
  professionCode: "01",
});
// One registration number binds one account: each case gets clinicians of its own.
const CASE = (k: number) => [1, 2, 3].map((i) => clinician(k * 3 + i));
const CLINICIANS = CASE(0);
const ALL = [0, 1, 2, 3].flatMap(CASE);
const silent = createLogger("test", "silent");

describe("registries that fail", () => {
  let store: Store;
  let big: BigTestServer;
  let dir: string;
  let leader: Leader & { stop(): Promise<void> };
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "medmesh-registry-failures-"));
    store = await createStore(
      { type: "pglite", data_dir: join(dir, "store") },
      { migrations: IDENTITY_MIGRATIONS },
    );
    big = await startBigTestServer(ALL);
    leader = await electedLeader(store, REVERIFY_JOB, silent);
  });
  afterAll(async () => {
    await big.stop();
    await leader.stop();
    await store.close();
  });

  const setup = (registries: Map<string, RegistryAdapter>) => {
    const records = verificationRecords(store.knex);
    const verifier = createVerifier({
      serverName: "nl.example",
      records,
      registries,
      audit: createAuditLog(store.knex),
      log: silent,
      validityMs: 3_600_000,
      requireDocument: false,
    });
    const reverifier = createReverifier({
      verifier,
      records,
      leader,
      knex: store.knex,
      documents: store.documents,
      config: { schedule: "0 3 * * *", concurrency: 2, rate_per_second: 100 },
      log: silent,
      metrics: new Registry(),
    });
    return { records, verifier, reverifier };
  };
  const bigRegistry = () =>
    new Map([["BIG", createBigRegistry({ url: big.url, timeoutMs: 1000, maxAnswerBytes: 64 * 1024 })]]);

  it.each<[BigTestMode, RegExp, number]>([
    ["huge", /could not be reached \(malformed\)/, 0],
    ["malformed", /could not be reached \(malformed\)/, 1],
    ["slow", /could not be reached \(timeout\)/, 2],
  ])(
    "a registry answering %s: every check stays pending, and a run checks every clinician",
    async (mode, why, k) => {
      const CLINICIANS = CASE(k);
      const { verifier, reverifier, records } = setup(bigRegistry());
      big.setMode(mode);
      const heapBefore = process.memoryUsage().rss;
      for (const [i, c] of CLINICIANS.entries()) {
        const outcome = await verifier.start(`@${mode}${String(i)}:nl.example`, {
          registry: "BIG",
          number: c.number,
          claimed_name: c.mailingName,
        });
        expect(outcome).toMatchObject({ status: "pending" });
        expect((outcome as { reason: string }).reason).toMatch(why);
      }
      // Three 50 MiB answers read at most 64 KiB each.
      if (mode === "huge") expect(process.memoryUsage().rss - heapBefore).toBeLessThan(100 * 1024 * 1024);
      const run = await reverifier.run();
      expect(run).toMatchObject({ ran: true, failed: 0 });
      expect(run.unavailable).toBeGreaterThanOrEqual(CLINICIANS.length);
      big.setMode("normal");
      const after = await reverifier.run(new Date(Date.now() + 1000));
      expect(after.verified).toBeGreaterThanOrEqual(CLINICIANS.length);
      for (const i of CLINICIANS.keys())
        expect((await records.get(`@${mode}${String(i)}:nl.example`))?.status).toBe("verified");
    },
  );

  it("the reason names the answer size limit", async () => {
    big.setMode("huge");
    const adapter = createBigRegistry({ url: big.url, timeoutMs: 5000, maxAnswerBytes: 64 * 1024 });
    await expect(adapter.lookup(CLINICIANS[0]!.number)).rejects.toThrow(/max_answer_bytes/);
    big.setMode("normal");
  });

  it("a registry taken out of the config never aborts a run: that record is reported, the rest go on", async () => {
    const first = setup(bigRegistry());
    await first.verifier.start("@kept:nl.example", {
      registry: "BIG",
      number: CASE(3)[0]!.number,
      claimed_name: CASE(3)[0]!.mailingName,
    });
    // The same store, now with no registry at all: the BIG record cannot be checked.
    const without = setup(new Map());
    const run = await without.reverifier.run(new Date(Date.now() + 5000));
    expect(run).toMatchObject({ ran: true, failed: 0 });
    const kept = await without.records.get("@kept:nl.example");
    expect(kept).toMatchObject({
      status: "verified",
      reason: expect.stringMatching(/no longer checks BIG/) as unknown,
    });
    // And a record that cannot be checked for another reason is reported while the run goes on.
    const broken: RegistryAdapter = {
      registry: "BIG",
      validateNumber: (n) => ({ ok: true, normalised: n }),
      lookup: () => Promise.reject(new TypeError("a bug in an adapter")),
    };
    const buggy = setup(new Map([["BIG", broken]]));
    const again = await buggy.reverifier.run(new Date(Date.now() + 10_000));
    expect(again.failed).toBeGreaterThan(0);
    expect(again.ran).toBe(true);
  });

  it("a broken extract file at start leaves its checks pending with the reason, until it is fixed", async () => {
    const file = join(dir, "extract.csv");
    const header = "registry,number,initials,prefix,surname,given,profession,specialisms,status";
    writeFileSync(file, `${header}\nREG,1,,,,,nurse,,active\n`); // no surname
    const errors: string[] = [];
    const log = {
      error: (_o: object, msg: string) => {
        errors.push(msg);
      },
    };
    expect(openRegistryExtract({ file }, log), "no registry name: left out").toBeUndefined();
    const adapter = openRegistryExtract({ file, registry: "REG" }, log);
    expect(adapter?.registry).toBe("REG");
    expect(errors).toHaveLength(2);
    const { verifier } = setup(new Map([["REG", adapter!]]));
    const outcome = await verifier.start("@extract:nl.example", {
      registry: "REG",
      number: "1",
      claimed_name: "Jansen",
    });
    expect(outcome).toMatchObject({ status: "pending" });
    expect((outcome as { reason: string }).reason).toMatch(/malformed/);
    writeFileSync(file, `${header}\nREG,1,,,Jansen,,nurse,,active\n`);
    expect(
      await verifier.start("@extract:nl.example", { registry: "REG", number: "1", claimed_name: "Jansen" }),
    ).toMatchObject({ status: "verified" });
  });
});
