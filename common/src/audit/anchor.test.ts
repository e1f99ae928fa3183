import { generateKeyPairSync } from "node:crypto";
import { appendFileSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { createStore, type Store } from "../store/index.ts";
import { fileAnchorStore, signAnchor, verifyAnchored } from "./anchor.ts";
import { createAnchorer } from "./anchorer.ts";
import { createAuditLog, type AuditLog } from "./audit-log.ts";

const key = { kid: "org-1", privateKey: generateKeyPairSync("ed25519").privateKey };
const verifyKey = { kid: key.kid, key: key.privateKey };
const other = { kid: "org-1", privateKey: generateKeyPairSync("ed25519").privateKey };

async function withAudit(fn: (audit: AuditLog, store: Store, dir: string) => Promise<void>): Promise<void> {
  const store = await createStore({ type: "pglite", data_dir: "memory://" });
  try {
    await fn(createAuditLog(store.knex), store, mkdtempSync(join(tmpdir(), "medmesh-anchor-")));
  } finally {
    await store.close();
  }
}

const record = (audit: AuditLog, outcome: string): Promise<void> =>
  audit.record({ actor: "@medmesh:a.example", action: "test", object: "x", outcome });

describe("audit anchors", () => {
  it("keeps signed heads in a file and reads the highest of the newest", async () => {
    const dir = mkdtempSync(join(tmpdir(), "medmesh-anchor-"));
    const anchors = fileAnchorStore(join(dir, "anchors.jsonl"));
    expect(await anchors.latest()).toBeUndefined();
    const at = "2026-03-01T10:00:00.000Z";
    // Two instances appending: the later line may anchor an older head.
    for (let seq = 1; seq <= 200; seq++)
      await anchors.append(signAnchor(key, { seq, hash: "h", at }, "a.example"));
    await anchors.append(signAnchor(key, { seq: 150, hash: "h", at }, "a.example"));
    expect((await anchors.latest())?.anchor).toMatchObject({ seq: 200, server_name: "a.example" });
    appendFileSync(join(dir, "anchors.jsonl"), "not json\n");
    await expect(anchors.latest()).rejects.toThrow(/not a signed audit anchor/);
  });

  it("verifies the chain against the latest anchor, and refuses a forged or missing one", () =>
    withAudit(async (audit, store, dir) => {
      const file = join(dir, "anchors.jsonl");
      const anchors = fileAnchorStore(file);
      expect(await verifyAnchored(audit, anchors, verifyKey)).toMatchObject({ ok: true, anchor: null });
      await record(audit, "one");
      await record(audit, "two");
      expect((await verifyAnchored(audit, anchors, verifyKey)).break).toMatchObject({ kind: "bad_anchor" });

      const anchorer = createAnchorer({
        audit,
        anchors,
        key,
        serverName: "a.example",
        log: pino({ level: "silent" }),
      });
      expect(await anchorer.anchorNow()).toMatchObject({ anchored: true, anchor: { anchor: { seq: 2 } } });
      expect(await anchorer.anchorNow()).toMatchObject({ anchored: false }); // nothing new
      const ok = await verifyAnchored(audit, anchors, verifyKey);
      expect(ok).toMatchObject({
        ok: true,
        records: 2,
        anchor: { seq: 2, kid: "org-1", signature_valid: true },
      });

      await store.knex("audit_log").where({ seq: 2 }).delete();
      expect((await verifyAnchored(audit, anchors, verifyKey)).break).toMatchObject({
        kind: "truncated",
        seq: 2,
      });
      // A restart must not sign the shortened chain.
      expect(await anchorer.anchorNow()).toMatchObject({ anchored: false, refused: { kind: "truncated" } });

      // An anchor signed by another key proves nothing.
      writeFileSync(
        file,
        `${JSON.stringify(signAnchor(other, { seq: 1, hash: "x", at: "t" }, "a.example"))}\n`,
      );
      expect(await verifyAnchored(audit, anchors, verifyKey)).toMatchObject({
        ok: false,
        anchor: { signature_valid: false },
        break: { kind: "bad_anchor", seq: 1 },
      });
      expect(await anchorer.anchorNow()).toMatchObject({ refused: { kind: "bad_anchor" } });
    }));

  it("anchors what it verified from the previous anchor, not from the genesis", () =>
    withAudit(async (audit, store, dir) => {
      const anchors = fileAnchorStore(join(dir, "anchors.jsonl"));
      const anchorer = createAnchorer({
        audit,
        anchors,
        key,
        serverName: "a.example",
        log: pino({ level: "silent" }),
      });
      await record(audit, "one");
      await record(audit, "two");
      await anchorer.anchorNow();
      await record(audit, "three");
      // An edit before the anchor is the full verification's to find; the anchorer's bounded
      // check starts at the anchor, and the new anchor does not hide the edit.
      await store.knex("audit_log").where({ seq: 1 }).update({ outcome: "edited" });
      expect(await anchorer.anchorNow()).toMatchObject({ anchored: true, anchor: { anchor: { seq: 3 } } });
      expect((await verifyAnchored(audit, anchors, verifyKey)).break).toMatchObject({
        kind: "edited",
        seq: 1,
      });
    }));

  it("anchors an empty log at the genesis, so that a missing anchor always means a removed one", () =>
    withAudit(async (audit, _store, dir) => {
      const anchors = fileAnchorStore(join(dir, "anchors.jsonl"));
      const anchorer = createAnchorer({
        audit,
        anchors,
        key,
        serverName: "a.example",
        log: pino({ level: "silent" }),
      });
      expect(await anchorer.anchorNow()).toMatchObject({
        anchored: true,
        anchor: { anchor: { seq: 0, hash: "0".repeat(64) } },
      });
      expect(await anchorer.anchorNow()).toMatchObject({ anchored: false });
      await record(audit, "one");
      expect(await verifyAnchored(audit, anchors, verifyKey)).toMatchObject({
        ok: true,
        records: 1,
        anchor: { seq: 0 },
      });
      expect(await anchorer.anchorNow()).toMatchObject({ anchored: true, anchor: { anchor: { seq: 1 } } });
    }));
});
