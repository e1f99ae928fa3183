import { describe, expect, it } from "vitest";
import { createAuditLog, createStore, type Store } from "@medmesh/common";
import { storeBackends } from "../../../common/src/store/test-backends.ts";
import { POLICY_MODULE_MIGRATIONS } from "../migrations.ts";
import { proofOf } from "./api-audit.ts";
import { auditQuery } from "./audit-query.ts";
import { createSessions } from "./sessions.ts";

for (const backend of storeBackends()) {
  describe(`console store on ${backend.name}`, () => {
    const withStore = async (fn: (store: Store) => Promise<void>): Promise<void> => {
      const b = await backend.make();
      const store = await createStore(b.config, { migrations: POLICY_MODULE_MIGRATIONS });
      try {
        await fn(store);
      } finally {
        await store.close();
        await b.cleanup();
      }
    };

    it("ends a session after its idle time and after its maximum age, and forgets forged or ended ones", () =>
      withStore(async (store) => {
        let now = new Date("2026-03-01T10:00:00Z");
        const sessions = createSessions(store.knex, {
          idleMs: 30 * 60_000,
          maxMs: 2 * 3_600_000,
          now: () => now,
        });
        const { id, session } = await sessions.create("@ann:a.example");
        // Only a hash of the cookie's value is stored.
        const rows = await store.knex<{ id_hash: string }>("console_sessions").select("id_hash");
        expect(rows.map((r) => r.id_hash)).not.toContain(id);
        expect(await sessions.use(id)).toMatchObject({
          userId: "@ann:a.example",
          csrfToken: session.csrfToken,
        });
        expect(await sessions.use("forged")).toBe("unknown");
        // Used every 20 minutes, it lives on — until its maximum age.
        for (let i = 0; i < 5; i++) {
          now = new Date(now.getTime() + 20 * 60_000);
          expect(await sessions.use(id)).toMatchObject({ userId: "@ann:a.example" });
        }
        now = new Date(now.getTime() + 20 * 60_000); // 2 h after sign-in
        expect(await sessions.use(id)).toBe("expired");
        expect(await sessions.use(id)).toBe("unknown"); // and deleted

        const idle = await sessions.create("@ann:a.example");
        now = new Date(now.getTime() + 31 * 60_000);
        expect(await sessions.use(idle.id)).toBe("expired");

        const a = await sessions.create("@bob:a.example");
        const b = await sessions.create("@bob:a.example");
        expect(await sessions.endAll("@bob:a.example")).toBe(2);
        expect(await sessions.use(a.id)).toBe("unknown");
        expect(await sessions.use(b.id)).toBe("unknown");
      }));

    it("pages the audit log newest first by filter, and the export's proof recomputes every hash", () =>
      withStore(async (store) => {
        const audit = createAuditLog(store.knex);
        const t0 = Date.parse("2026-03-01T10:00:00Z");
        for (let i = 0; i < 30; i++)
          await audit.record(
            {
              actor: i % 2 ? "@admin:a.example" : "@medmesh:a.example",
              action: i % 3 ? "console.sign_in" : "identity.check",
              object: `@u${String(i % 5)}:a.example`,
              outcome: "ok",
              details: { n: i },
            },
            new Date(t0 + i * 1000),
          );
        const q = auditQuery(store.knex);
        const first = await q.page({ actor: "@admin:a.example" }, 10);
        expect(first.records).toHaveLength(10);
        expect(first.records.map((r) => r.seq)).toEqual(
          [...first.records.map((r) => r.seq)].sort((x, y) => y - x),
        );
        const second = await q.page({ actor: "@admin:a.example", before: first.next_before ?? 0 }, 10);
        expect(second.records).toHaveLength(5);
        expect(second.next_before).toBeNull();
        expect((await q.page({ action: "console." }, 100)).records).toHaveLength(20);
        const range = { from: new Date(t0 + 5000).toISOString(), to: new Date(t0 + 15_000).toISOString() };
        const rows = await q.range(range, 1000);
        expect(rows).toHaveLength(10);
        expect(proofOf(rows, range)).toMatchObject({
          records: 10,
          hashes_ok: 10,
          consecutive_links: 9,
          links_ok: 9,
          contiguous: true,
        });
        // An edited record no longer recomputes.
        await store.knex("audit_log").where({ seq: rows[3]!.seq }).update({ outcome: "changed" });
        expect(proofOf(await q.range(range, 1000), range).hashes_ok).toBe(9);
      }));
  });
}
