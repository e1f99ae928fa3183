import { createAuditLog, createLogger, createStore, type Store } from "@medmesh/common";
import { COMMON_MIGRATIONS, migrate } from "@medmesh/common/store";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storeBackends } from "../../../common/src/store/test-backends.ts";
import { IDENTITY_MIGRATIONS } from "./migrations.ts";
import { identityDocuments, NumberInUseError, verificationRecords } from "./records.ts";
import { createBigRegistry } from "./registries/big/client.ts";
import { startBigTestServer, type BigTestServer } from "./registries/big/test-server.ts";
import { createVerifier } from "./verifier.ts";

// One registration number, one account: a second account's claim is refused (nothing stored) or
// reviewed, and the store's unique index decides a race between two requests or two replicas.
const person = (n: number) => ({
  number: `1901234${String(n).padStart(4, "0")}`,
  initials: "J.",
  prefix: "de",
  surname: `Vries${String(n)}`,
  mailingName: `J. de Vries${String(n)}`,
  professionCode: "01",
});
const PEOPLE = Array.from({ length: 12 }, (_, i) => person(i + 1));
const nameOf = (n: number) => `J. de Vries${String(n)}`;
const silent = createLogger("test", "silent");

for (const backend of storeBackends()) {
  describe(`one registration per account (${backend.name})`, () => {
    let stores: Store[] = [];
    let cleanup: () => Promise<void>;
    let big: BigTestServer;
    beforeAll(async () => {
      const made = await backend.make();
      cleanup = () => made.cleanup();
      const first = await createStore(made.config, { migrations: IDENTITY_MIGRATIONS });
      // Two replicas of the policy module on one database, where the backend allows it.
      const second =
        backend.name === "PostgreSQL"
          ? await createStore(made.config, { migrations: IDENTITY_MIGRATIONS })
          : first;
      stores = [first, second];
      // Registry answers take a while, so that two claims at once both pass the holder check.
      big = await startBigTestServer(PEOPLE, { delayMs: 150 });
    }, 60_000);
    afterAll(async () => {
      await big.stop();
      for (const s of new Set(stores)) await s.close();
      await cleanup();
    });

    const setup = (
      opts: { duplicate?: "refuse" | "review"; replica?: 0 | 1; gone?: string[]; document?: boolean } = {},
    ) => {
      const store = stores[opts.replica ?? 0] ?? stores[0];
      if (!store) throw new Error("no store");
      const records = verificationRecords(store.knex);
      const audit = createAuditLog(store.knex);
      const changes: string[] = [];
      const verifier = createVerifier({
        serverName: "nl.example",
        records,
        registries: new Map([["BIG", createBigRegistry({ url: big.url, timeoutMs: 5000 })]]),
        audit,
        log: silent,
        validityMs: 3_600_000,
        requireDocument: opts.document ?? false,
        documents: identityDocuments(store.knex),
        duplicateNumber: opts.duplicate ?? "refuse",
        accountGone: (userId) => Promise.resolve((opts.gone ?? []).includes(userId)),
        onChange: (r) => changes.push(`${r.user_id}:${r.status}`),
      });
      return { verifier, records, audit, changes, knex: store.knex };
    };
    const claim = (v: ReturnType<typeof setup>["verifier"], user: string, n: number, name = nameOf(n)) =>
      v.start(`@${user}:nl.example`, { registry: "BIG", number: person(n).number, claimed_name: name });

    it("refuses a second account's claim of a bound number, stores nothing, audits without the number", async () => {
      const { verifier, records, audit, knex } = setup();
      await expect(claim(verifier, "anna", 1)).resolves.toMatchObject({ status: "verified" });
      const refused = claim(verifier, "mallory", 1);
      await expect(refused).rejects.toBeInstanceOf(NumberInUseError);
      await expect(refused).rejects.toMatchObject({ errcode: "ORG.MEDMESH.NUMBER_IN_USE", status: 409 });
      expect(await records.get("@mallory:nl.example")).toBeUndefined();
      const entries = await audit.find({ object: "@mallory:nl.example" });
      expect(entries.map((e) => [e.action, e.outcome])).toEqual([["identity.request", "number_in_use"]]);
      expect(entries[0]?.details).toMatchObject({ conflict_with: "@anna:nl.example" });
      expect(JSON.stringify(entries)).not.toContain(person(1).number);
      // The index holds a keyed hash, never the number.
      const rows: { number_hash: string | null }[] = await knex("clinician_verifications")
        .where({ user_id: "@anna:nl.example" })
        .select("number_hash");
      expect(rows[0]?.number_hash).toMatch(/^[0-9a-f]{64}$/);
      expect(rows[0]?.number_hash).not.toContain(person(1).number);
      // The same account asking again is not a conflict.
      await expect(claim(verifier, "anna", 1)).resolves.toMatchObject({ status: "verified" });
    });

    it("lets one of two simultaneous claims win (API and bot, or two replicas): the store decides", async () => {
      const a = setup({ replica: 0 });
      const b = setup({ replica: 1 });
      const results = await Promise.allSettled([claim(a.verifier, "carl", 2), claim(b.verifier, "dirk", 2)]);
      const won = results.filter((r) => r.status === "fulfilled");
      const lost = results.filter((r) => r.status === "rejected");
      expect(won).toHaveLength(1);
      expect(won[0]?.value).toMatchObject({ status: "verified" });
      expect(lost).toHaveLength(1);
      expect(lost[0]?.reason).toBeInstanceOf(NumberInUseError);
      const stored = [await a.records.get("@carl:nl.example"), await a.records.get("@dirk:nl.example")];
      expect(stored.filter((r) => r !== undefined)).toHaveLength(1);
    });

    it("releases a number when the holder's claim was rejected, or the holder's account is deactivated", async () => {
      const { verifier, records } = setup({ gone: ["@gone:nl.example"] });
      // A wrong name: rejected, and the number stays free for its owner.
      await expect(claim(verifier, "eve", 3, "J. Pietersen")).resolves.toMatchObject({ status: "rejected" });
      await expect(claim(verifier, "erik", 3)).resolves.toMatchObject({ status: "verified" });
      // A deactivated account's number goes to whoever claims it next; the old record is revoked.
      await expect(claim(verifier, "gone", 4)).resolves.toMatchObject({ status: "verified" });
      await expect(claim(verifier, "frank", 4)).resolves.toMatchObject({ status: "verified" });
      expect(await records.get("@gone:nl.example")).toMatchObject({
        status: "revoked",
        reason: expect.stringMatching(/deactivated/) as unknown,
      });
    });

    it("sends the claim to review with the conflict shown; approving moves the number", async () => {
      const { verifier, records, changes } = setup({ duplicate: "review" });
      await expect(claim(verifier, "greta", 5)).resolves.toMatchObject({ status: "verified" });
      // Even without require_id_document, a conflict asks for an ID document first.
      const outcome = await claim(verifier, "hanna", 5);
      expect(outcome).toMatchObject({
        status: "awaiting_document",
        reason: expect.stringMatching(/already bound/) as unknown,
      });
      await verifier.documentUploaded("@hanna:nl.example", "image/png", Buffer.from("png"));
      const queue = await verifier.reviewQueue();
      expect(queue.find((r) => r.user_id === "@hanna:nl.example")).toMatchObject({
        conflict_with: "@greta:nl.example",
      });
      // Until decided, greta keeps the number and her verification.
      expect(await records.get("@greta:nl.example")).toMatchObject({ status: "verified" });
      await expect(
        verifier.review("@hanna:nl.example", true, "", "@admin:nl.example"),
      ).resolves.toMatchObject({ status: "verified" });
      expect(await records.get("@greta:nl.example")).toMatchObject({ status: "revoked" });
      expect(await records.get("@hanna:nl.example")).not.toHaveProperty("conflict_with");
      expect(changes).toContain("@greta:nl.example:revoked");
      // The number is hanna's now: greta claiming it again is a conflict of her own.
      await expect(claim(verifier, "greta", 5)).resolves.toMatchObject({ status: "awaiting_document" });
    });

    it("a rejected review leaves the holder as it was", async () => {
      const { verifier, records } = setup({ duplicate: "review", document: true });
      await claim(verifier, "ivo", 6);
      await verifier.documentUploaded("@ivo:nl.example", "image/png", Buffer.from("png"));
      await verifier.review("@ivo:nl.example", true, "", "@admin:nl.example");
      await claim(verifier, "jan", 6);
      await verifier.documentUploaded("@jan:nl.example", "image/png", Buffer.from("png"));
      await expect(
        verifier.review("@jan:nl.example", false, "Not the person of the registration", "@admin:nl.example"),
      ).resolves.toMatchObject({ status: "rejected" });
      expect(await records.get("@ivo:nl.example")).toMatchObject({ status: "verified" });
    });

    it("migration 30 binds existing numbers to their first verified account and marks later duplicates", async () => {
      const made = await backend.make();
      const store = await createStore(made.config, {
        migrations: IDENTITY_MIGRATIONS.filter((m) => m.version < 30),
      });
      try {
        const row = (user: string, verifiedAt: string) => ({
          user_id: user,
          registry: "BIG",
          registration_number: person(7).number,
          claimed_name: nameOf(7),
          specialisms: "[]",
          status: "verified",
          verified_at: new Date(verifiedAt),
          expires_at: new Date(Date.now() + 3_600_000),
          updated_at: new Date(verifiedAt),
          attempts: 0,
        });
        await store
          .knex("clinician_verifications")
          .insert([row("@later:nl.example", "2026-02-01"), row("@first:nl.example", "2026-01-01")]);
        await migrate(store.knex, [...COMMON_MIGRATIONS, ...IDENTITY_MIGRATIONS]);
        const records = verificationRecords(store.knex);
        expect(await records.get("@later:nl.example")).toMatchObject({
          status: "verified",
          conflict_with: "@first:nl.example",
        });
        expect(await records.holderOf("BIG", person(7).number, "@nobody:nl.example")).toMatchObject({
          user_id: "@first:nl.example",
        });
      } finally {
        await store.close();
        await made.cleanup();
      }
    });
  });
}
