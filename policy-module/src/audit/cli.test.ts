import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createAnchorer, createAuditLog, createStore, fileAnchorStore } from "@medmesh/common";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { generateOperatorKey } from "../trust/trust-list.ts";
import { loadOrgKey } from "../trust/index.ts";
import { runAuditCli } from "./cli.ts";

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const code = await runAuditCli(args, {
    stdout: (s) => (out += s),
    stderr: (s) => (err += s),
  });
  return { code, out, err };
}

/** A closed embedded store with three records, anchored; the config and files pointing at it. */
async function setUp(): Promise<{
  dir: string;
  storeDir: string;
  anchors: string;
  keyFile: string;
  config: string;
}> {
  const dir = mkdtempSync(join(tmpdir(), "medmesh-audit-cli-"));
  const storeDir = join(dir, "store");
  const anchors = join(dir, "audit-anchors.jsonl");
  const keyFile = join(dir, "organisation.jwk.json");
  writeFileSync(keyFile, JSON.stringify(generateOperatorKey("org-a").privateJwk));
  const store = await createStore({ type: "pglite", data_dir: storeDir });
  try {
    const audit = createAuditLog(store.knex);
    for (let i = 0; i < 3; i++)
      await audit.record(
        {
          actor: "@medmesh:a.example",
          action: "identity.check",
          object: "@ann:a.example",
          outcome: "verified",
        },
        new Date(Date.UTC(2026, 2, 1, 10, 0, i)),
      );
    const anchorer = createAnchorer({
      audit,
      anchors: fileAnchorStore(anchors),
      key: loadOrgKey(keyFile),
      serverName: "a.example",
      log: pino({ level: "silent" }),
    });
    await anchorer.anchorNow(new Date("2026-03-01T10:05:00Z"));
  } finally {
    await store.close();
  }
  const config = join(dir, "policy-module.yaml");
  writeFileSync(
    config,
    [
      "homeserver: { server_name: a.example, url: 'http://127.0.0.1:8008' }",
      "appservice: { registration_file: /nonexistent/registration.yaml }",
      "listen: { port: 0 }",
      `store: { type: pglite, data_dir: '${storeDir}' }`,
      `organisation: { signing_key_file: '${keyFile}' }`,
      `audit: { anchor_file: '${anchors}' }`,
    ].join("\n"),
  );
  return { dir, storeDir, anchors, keyFile, config };
}

describe("medmesh audit verify", () => {
  it("prints what it checked and exits 0 on an intact chain, 1 on a deleted newest record", async () => {
    const s = await setUp();
    const ok = await run(["verify", "--config", s.config]);
    expect(ok.err).toBe("");
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(
      /^records: 3 checked, seq 1 \(2026-03-01T10:00:00\.000Z\) to seq 3 \(2026-03-01T10:00:02\.000Z\)\nhead: {4}seq 3 sha256 [0-9a-f]{64}\nanchor: {2}seq 3 sha256 [0-9a-f]{64}, signed 2026-03-01T10:05:00\.000Z by key org-a \(signature valid\), from file .*audit-anchors\.jsonl\nread: {4}1 page\(s\)\nresult: {2}ok, the chain is intact up to and beyond the anchor\n$/,
    );
    const asJson = await run([
      "verify",
      "--store",
      s.storeDir,
      "--anchor-file",
      s.anchors,
      "--key",
      s.keyFile,
      "--json",
    ]);
    expect(asJson.code).toBe(0);
    expect(JSON.parse(asJson.out)).toMatchObject({
      ok: true,
      records: 3,
      anchor: { seq: 3, signature_valid: true },
    });

    const store = await createStore({ type: "pglite", data_dir: s.storeDir });
    await store.knex("audit_log").where({ seq: 3 }).delete();
    await store.close();
    const broken = await run(["verify", "--config", s.config]);
    expect(broken.code).toBe(1);
    expect(broken.out).toContain("records: 2 checked");
    expect(broken.out).toMatch(
      /result: {2}BROKEN at seq 3: newest records deleted since the anchor \(the newest records were deleted: the anchor signed seq 3, the log ends at seq 2\)\n$/,
    );
    const noAnchor = await run(["verify", "--store", s.storeDir]);
    expect(noAnchor.code).toBe(0); // without the anchor the shortened chain looks intact …
    expect(noAnchor.out).toContain(
      "anchor:  none (no anchor file given: deleting the newest records would go unnoticed)",
    );
  });

  it("exits 1 on an edited record and on a record missing in the middle", async () => {
    const s = await setUp();
    const store = await createStore({ type: "pglite", data_dir: s.storeDir });
    await store.knex("audit_log").where({ seq: 2 }).update({ outcome: "rejected" });
    await store.close();
    const edited = await run(["verify", "--config", s.config]);
    expect(edited.code).toBe(1);
    expect(edited.out).toContain(
      "result:  BROKEN at seq 2: edited record (record 2 was edited: its content does not match its hash)",
    );

    const again = await createStore({ type: "pglite", data_dir: s.storeDir });
    await again.knex("audit_log").where({ seq: 2 }).delete();
    await again.close();
    const missing = await run(["verify", "--config", s.config, "--json"]);
    expect(missing.code).toBe(1);
    expect(JSON.parse(missing.out)).toMatchObject({ ok: false, break: { kind: "missing", seq: 2 } });
  });

  it("exits 2 when called wrongly and 3 when the store cannot be opened", async () => {
    const s = await setUp();
    expect((await run([])).code).toBe(2);
    expect((await run(["check"])).code).toBe(2);
    expect((await run(["verify"])).err).toMatch(/give either --config or --store/);
    expect((await run(["verify", "--config", s.config, "--store", s.storeDir])).code).toBe(2);
    expect((await run(["verify", "--store", s.storeDir, "--anchor-file", s.anchors])).code).toBe(2);
    expect((await run(["verify", "--config", join(s.dir, "missing.yaml")])).code).toBe(2);
    expect((await run(["verify", "--store", s.storeDir, "--page-size", "0"])).code).toBe(2);
    expect((await run(["verify", "--store", s.storeDir, "--bogus"])).code).toBe(2);
    writeFileSync(join(s.storeDir, "medmesh.pid"), "1\n"); // the service (pid 1 is always alive) holds it
    const busy = await run(["verify", "--config", s.config]);
    expect(busy.code).toBe(3);
    expect(busy.err).toMatch(/in use by process 1[\s\S]*GET \/_medmesh\/admin\/v1\/audit\/verify/);
  });
});
