import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { canonicalJson } from "../crypto/canonical-json.ts";
import { createStore, type Store } from "../store/index.ts";
import { storeBackends } from "../store/test-backends.ts";
import { createAuditLog, type AuditLog } from "./audit-log.ts";

const entry = (outcome: string, object = "@ann:a.example") => ({
  actor: "@medmesh:a.example",
  on_behalf_of: "@ann:a.example",
  action: "identity.check",
  object,
  outcome,
  details: { registry: "BIG" },
});

const t0 = Date.parse("2026-03-01T10:00:00.000Z");

/** Five records, one second apart. */
async function fiveRecords(audit: AuditLog): Promise<void> {
  for (const [i, outcome] of ["verified", "revoked", "verified", "pending", "verified"].entries())
    await audit.record(entry(outcome), new Date(t0 + i * 1000));
}

/**
 * Re-hashes every record from `seq` on, as someone with write access to the table could: the
 * chain is then self-consistent again, and only an anchor shows what happened.
 */
async function rehashFrom(store: Store, seq: number): Promise<void> {
  const before = (await store.knex("audit_log").where("seq", "<", seq).orderBy("seq", "desc").first()) as
    { hash: string } | undefined;
  let prev = before?.hash ?? "0".repeat(64);
  const rows = (await store.knex("audit_log").where("seq", ">=", seq).orderBy("seq")) as Record<
    string,
    unknown
  >[];
  for (const r of rows) {
    const hash = independentHash(prev, r);
    await store.knex("audit_log").where({ seq: r.seq }).update({ prev_hash: prev, hash });
    prev = hash;
  }
}

/**
 * The chain's hash written out again from its definition (SHA-256 over the previous hash and the
 * canonical JSON of the record without seq and hashes), so the test also pins the format an
 * outside verifier relies on.
 */
function independentHash(prev: string, r: Record<string, unknown>): string {
  const content = {
    at: new Date(r.at as string).toISOString(),
    actor: r.actor,
    on_behalf_of: r.on_behalf_of ?? null,
    action: r.action,
    object: r.object,
    outcome: r.outcome,
    details: typeof r.details === "string" ? (JSON.parse(r.details) as unknown) : r.details,
  };
  return createHash("sha256").update(prev).update(canonicalJson(content)).digest("hex");
}

for (const backend of storeBackends()) {
  describe(`audit log on ${backend.name}`, () => {
    const withLog = async (fn: (audit: AuditLog, store: Store) => Promise<void>): Promise<void> => {
      const b = await backend.make();
      const store = await createStore(b.config);
      try {
        await fn(createAuditLog(store.knex), store);
      } finally {
        await store.close();
        await b.cleanup();
      }
    };

    it("verifies an intact chain and says what it checked", () =>
      withLog(async (audit) => {
        expect(await audit.verify()).toEqual({ ok: true, records: 0, first: null, last: null, pages: 1 });
        await fiveRecords(audit);
        const head = await audit.head();
        expect(await audit.verify()).toEqual({
          ok: true,
          records: 5,
          first: { seq: 1, at: "2026-03-01T10:00:00.000Z" },
          last: { seq: 5, at: "2026-03-01T10:00:04.000Z", hash: head?.hash },
          pages: 1,
        });
        expect(
          await audit.verify({ anchor: { seq: 3, hash: (await audit.find({}))[2]!.hash } }),
        ).toMatchObject({
          ok: true,
          records: 5,
        });
        expect((await audit.find({ object: "@ann:a.example" })).map((r) => r.outcome)).toEqual([
          "verified",
          "revoked",
          "verified",
          "pending",
          "verified",
        ]);
      }));

    it("uses the chain's documented hash", () =>
      withLog(async (audit, store) => {
        await fiveRecords(audit);
        const rows = (await store.knex("audit_log").orderBy("seq")) as Record<string, unknown>[];
        let prev = "0".repeat(64);
        for (const r of rows) {
          expect(r.hash).toBe(independentHash(prev, r));
          prev = r.hash as string;
        }
      }));

    it("detects an edited record, re-hashed or not", () =>
      withLog(async (audit, store) => {
        await fiveRecords(audit);
        await store.knex("audit_log").where({ seq: 2 }).update({ outcome: "verified" });
        expect((await audit.verify()).break).toEqual({
          kind: "edited",
          seq: 2,
          message: "record 2 was edited: its content does not match its hash",
        });
        // Re-hashing the edited record alone: the next one still chains to the original.
        const two = (await store.knex("audit_log").where({ seq: 2 }).first()) as Record<string, unknown>;
        await store
          .knex("audit_log")
          .where({ seq: 2 })
          .update({ hash: independentHash(two.prev_hash as string, two) });
        expect((await audit.verify()).break).toEqual({
          kind: "edited",
          seq: 2,
          message: "record 2 was edited (and re-hashed): record 3 chained to a different one",
        });
        // Re-hashing everything after it too: consistent again, and only an anchor can tell.
        await rehashFrom(store, 2);
        expect(await audit.verify()).toMatchObject({ ok: true, records: 5 });
      }));

    it("detects a record deleted in the middle, or the first ones", () =>
      withLog(async (audit, store) => {
        await fiveRecords(audit);
        await store.knex("audit_log").where({ seq: 3 }).delete();
        expect(await audit.verify()).toMatchObject({
          ok: false,
          records: 2,
          last: { seq: 2 },
          break: {
            kind: "missing",
            seq: 3,
            message: "records between seq 2 and 4 are missing: record 4 chains to one that is not there",
          },
        });
        await store.knex("audit_log").where("seq", "<", 3).delete();
        expect((await audit.verify()).break).toMatchObject({ kind: "missing", seq: 4 });
      }));

    it("accepts a gap in seq where the chain still links (a rolled-back insert)", () =>
      withLog(async (audit, store) => {
        await fiveRecords(audit);
        await store.knex("audit_log").where({ seq: 5 }).update({ seq: 9 });
        expect(await audit.verify()).toMatchObject({ ok: true, records: 5, last: { seq: 9 } });
      }));

    it("detects the newest records deleted, or the tail rewritten, after an anchor", () =>
      withLog(async (audit, store) => {
        await fiveRecords(audit);
        const head = await audit.head();
        const anchor = { seq: 5, hash: head?.hash ?? "" };
        expect(await audit.verify({ anchor })).toMatchObject({ ok: true });
        await store.knex("audit_log").where("seq", ">=", 4).delete();
        // Without the anchor the shortened chain is perfectly consistent: that is why anchors exist.
        expect(await audit.verify()).toMatchObject({ ok: true, records: 3 });
        expect(await audit.verify({ anchor })).toMatchObject({
          ok: false,
          records: 3,
          break: {
            kind: "truncated",
            seq: 5,
            message: "the newest records were deleted: the anchor signed seq 5, the log ends at seq 3",
          },
        });
        // New records appended after the deletion do not hide it.
        await audit.record(entry("verified"));
        await audit.record(entry("verified"));
        expect((await audit.verify({ anchor })).break).toMatchObject({ kind: "rewritten", seq: 5 });
        await store.knex("audit_log").where("seq", ">=", 6).delete();

        // Deleting a middle record and re-hashing the rest: consistent, but not what was anchored.
        const three = await audit.head();
        await audit.record(entry("late"));
        await store.knex("audit_log").where({ seq: 2 }).delete();
        await rehashFrom(store, 3);
        expect(await audit.verify()).toMatchObject({ ok: true });
        expect((await audit.verify({ anchor: { seq: 3, hash: three?.hash ?? "" } })).break).toMatchObject({
          kind: "rewritten",
          seq: 3,
        });
      }));

    it("checks from an anchor without reading what it vouches for", () =>
      withLog(async (audit, store) => {
        await fiveRecords(audit);
        const third = (await audit.find({}))[2]!;
        await store.knex("audit_log").where({ seq: 1 }).update({ outcome: "edited" });
        const anchor = { seq: third.seq, hash: third.hash };
        expect(await audit.verify({ anchor, fromAnchor: true })).toMatchObject({
          ok: true,
          records: 3,
          first: { seq: 3 },
          last: { seq: 5 },
        });
        await store.knex("audit_log").where({ seq: 5 }).delete();
        expect(await audit.verify({ anchor: { seq: 5, hash: third.hash }, fromAnchor: true })).toMatchObject({
          ok: false,
          break: { kind: "truncated", seq: 5 },
        });
      }));

    it(
      "pages through a large log: bounded rows per query, whatever the table's size",
      () =>
        withLog(async (audit, store) => {
          const n = 20_000;
          let prev = "0".repeat(64);
          for (let start = 0; start < n; start += 1000) {
            const rows = Array.from({ length: 1000 }, (_, i) => {
              const r = {
                at: new Date(t0 + (start + i) * 1000).toISOString(),
                ...entry("verified", `@u${String(start + i)}:a.example`),
              };
              const hash = independentHash(prev, r);
              const row = { ...r, details: JSON.stringify(r.details), prev_hash: prev, hash };
              prev = hash;
              return row;
            });
            await store.knex("audit_log").insert(rows);
          }
          const queries: { sql: string; bindings: readonly unknown[] }[] = [];
          const onQuery = (q: { sql: string; bindings?: readonly unknown[] }): void => {
            if (q.sql.includes("audit_log")) queries.push({ sql: q.sql, bindings: q.bindings ?? [] });
          };
          store.knex.on("query", onQuery);
          try {
            const report = await audit.verify({ pageSize: 500 });
            expect(report).toMatchObject({
              ok: true,
              records: n,
              first: { seq: 1 },
              last: { seq: n, hash: prev },
            });
            expect(report.pages).toBe(n / 500 + 1); // the last, empty page says it ended
            expect(queries).toHaveLength(report.pages);
            for (const q of queries) {
              expect(q.sql).toMatch(/limit (\?|\$\d+)$/i);
              expect(q.bindings.at(-1)).toBe(500);
            }
            await store.knex("audit_log").where({ seq: 15_001 }).update({ outcome: "revoked" });
            expect((await audit.verify()).break).toMatchObject({ kind: "edited", seq: 15_001 });
          } finally {
            store.knex.removeListener("query", onQuery);
          }
        }),
      120_000,
    );
  });
}
