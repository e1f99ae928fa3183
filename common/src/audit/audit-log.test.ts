import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createStore } from "../store/index.ts";
import { describe, expect, it } from "vitest";
import { createAuditLog } from "./audit-log.ts";

describe("audit log", () => {
  it("chains its records so that an edited or deleted record is detected", async () => {
    const store = await createStore({
      type: "pglite",
      data_dir: mkdtempSync(join(tmpdir(), "medmesh-audit-")),
    });
    try {
      const audit = createAuditLog(store.knex);
      for (const outcome of ["verified", "revoked", "verified"]) {
        await audit.record({
          actor: "@medmesh:a.example",
          on_behalf_of: "@ann:a.example",
          action: "identity.check",
          object: "@ann:a.example",
          outcome,
          details: { registry: "BIG" },
        });
      }
      expect(await audit.verify()).toEqual({ ok: true, records: 3 });
      expect((await audit.find({ object: "@ann:a.example" })).map((r) => r.outcome)).toEqual([
        "verified",
        "revoked",
        "verified",
      ]);

      await store.knex("audit_log").where({ seq: 2 }).update({ outcome: "verified" });
      expect(await audit.verify()).toEqual({ ok: false, brokenAt: 2 });
      await store.knex("audit_log").where({ seq: 2 }).update({ outcome: "revoked" });
      expect((await audit.verify()).ok).toBe(true);
      await store.knex("audit_log").where({ seq: 2 }).delete();
      expect(await audit.verify()).toEqual({ ok: false, brokenAt: 3 });
    } finally {
      await store.close();
    }
  });
});
