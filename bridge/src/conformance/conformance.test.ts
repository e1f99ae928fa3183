import { spawn } from "node:child_process";
import { generateKeyPairSync, randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@medmesh/common";
import express from "express";
import { afterEach, describe, expect, it } from "vitest";
import { EVENTS_PATH, REQUIRED_COMPONENTS } from "../interop/server.ts";
import { contentDigest, signRequest } from "../interop/signatures.ts";
import { startReferenceVendor, type BrokenFlag, type RunningReferenceVendor } from "../vendor/index.ts";
import { startConformanceKit, type CheckResult, type ConformanceKit } from "./index.ts";

const vendorKeys = generateKeyPairSync("ed25519");
const vendorJwk = vendorKeys.publicKey.export({ format: "jwk" });
const log = createLogger("conformance-test", "silent");

const WEBHOOK_CHECKS = [
  "webhook.accepts_signed_events",
  "webhook.rejects_unsigned",
  "webhook.rejects_wrong_key",
  "webhook.rejects_altered_body",
  "webhook.rejects_stale_signature",
  "webhook.rejects_replay",
  "webhook.retry_accepted",
  "webhook.retry_applied_once",
  "webhook.rejects_malformed_json",
  "webhook.rejects_invalid_event",
  "webhook.accepts_undelivered",
  "webhook.fetches_file",
];
const SENDER_CHECKS = [
  "sender.trigger",
  "sender.sends_valid_event",
  "sender.signature_components",
  "sender.content_digest",
  "sender.signature_valid",
  "sender.created_fresh",
  "sender.nonce_unique",
  "sender.retries_after_503",
  "sender.retry_same_body",
];

const cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanup.splice(0).reverse()) await c();
});

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
  const port = (probe.address() as AddressInfo).port;
  await new Promise((r) => probe.close(r));
  return port;
}

/** The kit, and the reference vendor configured with the kit as its MedMesh. */
async function kitAndVendor(broken?: Partial<Record<BrokenFlag, boolean>>, port = 0) {
  const kit = await startConformanceKit({ listen: { host: "127.0.0.1", port } });
  cleanup.push(() => kit.close());
  const vendor = await startReferenceVendor({
    dataFile: join(mkdtempSync(join(tmpdir(), "medmesh-conformance-")), "vendor.sqlite"),
    listen: { host: "127.0.0.1", port: 0 },
    vendorId: "refmsg",
    keyId: "refmsg-1",
    privateKey: vendorKeys.privateKey,
    medmesh: { url: kit.url, keyId: kit.medmeshKeyId, publicKey: kit.medmeshPublicKey },
    log,
    ...(broken ? { broken } : {}),
  });
  cleanup.push(() => vendor.stop());
  return { kit, vendor };
}

const run = (
  kit: ConformanceKit,
  vendor: RunningReferenceVendor,
  trigger = `${vendor.url}/api/conformance/trigger`,
) =>
  kit.run({
    webhook: vendor.webhookUrl,
    vendorKeyId: "refmsg-1",
    vendorPublicKey: vendorJwk,
    trigger,
    timeoutMs: 10_000,
  });

const failed = (results: CheckResult[]) => results.filter((r) => !r.ok).map((r) => r.name);
const detail = (results: CheckResult[], name: string) => results.find((r) => r.name === name)?.detail ?? "";

describe("the conformance kit against the reference vendor", () => {
  it("passes every check, webhook and sender", async () => {
    const { kit, vendor } = await kitAndVendor();
    const seen: string[] = [];
    const { results } = await kit.run({
      webhook: vendor.webhookUrl,
      vendorKeyId: "refmsg-1",
      vendorPublicKey: vendorKeys.publicKey,
      trigger: `${vendor.url}/api/conformance/trigger`,
      timeoutMs: 10_000,
      onResult: (r) => seen.push(r.name),
    });
    expect(results.filter((r) => !r.ok)).toEqual([]);
    expect(results.map((r) => r.name)).toEqual([...WEBHOOK_CHECKS, ...SENDER_CHECKS]);
    expect(seen).toEqual(results.map((r) => r.name));
    expect(detail(results, "webhook.accepts_signed_events")).toContain("applied once");
    expect(detail(results, "sender.retries_after_503")).toMatch(/2 attempts under .*, answered 503, 202/);
  });

  it("without a trigger, runs the webhook checks that need none", async () => {
    const { kit, vendor } = await kitAndVendor();
    const { results } = await kit.run({
      webhook: vendor.webhookUrl,
      vendorKeyId: "refmsg-1",
      vendorPublicKey: vendorJwk,
    });
    expect(results.map((r) => r.name)).toEqual(
      WEBHOOK_CHECKS.filter((n) => n !== "webhook.retry_applied_once"),
    );
    expect(failed(results)).toEqual([]);
  });

  it("names the check a vendor accepting unsigned requests fails", async () => {
    const { kit, vendor } = await kitAndVendor({ accept_unsigned: true });
    const { results } = await run(kit, vendor);
    expect(failed(results)).toEqual(["webhook.rejects_unsigned"]);
    expect(detail(results, "webhook.rejects_unsigned")).toMatch(
      /^expected 401 M_UNAUTHORIZED for a request without Signature and Signature-Input, got 200/,
    );
  });

  it("names the check a vendor without deduplication fails", async () => {
    const { kit, vendor } = await kitAndVendor({ no_dedup: true });
    const { results } = await run(kit, vendor);
    expect(failed(results)).toEqual(["webhook.retry_applied_once"]);
    expect(detail(results, "webhook.retry_applied_once")).toContain("the trigger says 2");
  });

  it("names the check a vendor accepting replays fails", async () => {
    const { kit, vendor } = await kitAndVendor({ accept_replay: true });
    const { results } = await run(kit, vendor);
    expect(failed(results)).toEqual(["webhook.rejects_replay"]);
    expect(detail(results, "webhook.rejects_replay")).toContain(
      "expected 401 M_UNAUTHORIZED for the identical request again",
    );
  });

  it("passes no refusal check for a vendor that refuses everything (another MedMesh key configured)", async () => {
    const kit = await startConformanceKit();
    cleanup.push(() => kit.close());
    const vendor = await startReferenceVendor({
      dataFile: join(mkdtempSync(join(tmpdir(), "medmesh-conformance-")), "vendor.sqlite"),
      listen: { host: "127.0.0.1", port: 0 },
      vendorId: "refmsg",
      keyId: "refmsg-1",
      privateKey: vendorKeys.privateKey,
      medmesh: {
        url: kit.url,
        keyId: kit.medmeshKeyId,
        publicKey: generateKeyPairSync("ed25519").publicKey.export({ format: "jwk" }),
      },
      log,
    });
    cleanup.push(() => vendor.stop());
    const { results } = await kit.run({
      webhook: vendor.webhookUrl,
      vendorKeyId: "refmsg-1",
      vendorPublicKey: vendorJwk,
    });
    expect(results.filter((r) => r.ok)).toEqual([]);
    expect(detail(results, "webhook.accepts_signed_events")).toContain(
      "got 401 M_UNAUTHORIZED (MedMesh's signature is not valid: the signature does not verify)",
    );
    expect(detail(results, "webhook.rejects_unsigned")).toContain("so this proves nothing");
  });

  it("fails the file check when the vendor fetches from elsewhere", async () => {
    const kit = await startConformanceKit();
    cleanup.push(() => kit.close());
    const elsewhere = await startConformanceKit(); // the vendor's "MedMesh" is another server
    cleanup.push(() => elsewhere.close());
    const vendor = await startReferenceVendor({
      dataFile: join(mkdtempSync(join(tmpdir(), "medmesh-conformance-")), "vendor.sqlite"),
      listen: { host: "127.0.0.1", port: 0 },
      vendorId: "refmsg",
      keyId: "refmsg-1",
      privateKey: vendorKeys.privateKey,
      medmesh: { url: elsewhere.url, keyId: kit.medmeshKeyId, publicKey: kit.medmeshPublicKey },
      log,
    });
    cleanup.push(() => vendor.stop());
    const { results } = await kit.run({
      webhook: vendor.webhookUrl,
      vendorKeyId: "refmsg-1",
      vendorPublicKey: vendorJwk,
      timeoutMs: 1500,
    });
    expect(failed(results)).toEqual(["webhook.fetches_file"]);
    expect(detail(results, "webhook.fetches_file")).toContain(`the vendor's MedMesh URL must be ${kit.url}`);
  });
});

/**
 * A vendor whose webhook is the reference vendor's but whose sending is wrong in a chosen way: its
 * trigger forwards `count` to the reference vendor and sends `send_message` itself, badly.
 */
async function badSender(
  vendor: RunningReferenceVendor,
  bug: "reused_nonce_new_body" | "weak_signature" | "new_key_per_attempt",
) {
  const app = express();
  app.use(express.json());
  app.post("/trigger", async (req, res) => {
    const body = req.body as { action: string; medmesh_url?: string };
    if (body.action === "count") {
      const r = await fetch(`${vendor.url}/api/conformance/trigger`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(req.body),
      });
      res.status(r.status).json(await r.json());
      return;
    }
    res.status(202).json({});
    const url = `${String(body.medmesh_url)}${EVENTS_PATH}`;
    const nonce = randomUUID();
    let key = randomUUID();
    for (let attempt = 1; attempt <= 2; attempt++) {
      if (bug === "new_key_per_attempt") key = randomUUID();
      const event = {
        type: "message",
        conversation_id: "c-bad",
        message_id: bug === "reused_nonce_new_body" ? randomUUID() : "m-bad",
        sender: "bad",
        text: "hello",
      };
      const bytes = Buffer.from(JSON.stringify(event));
      const headers: Record<string, string> = {
        "content-type": "application/json",
        "content-digest": contentDigest(bytes),
        "idempotency-key": key,
      };
      Object.assign(
        headers,
        signRequest(
          { method: "POST", url, headers, body: bytes },
          {
            keyId: "refmsg-1",
            privateKey: vendorKeys.privateKey,
            components:
              bug === "weak_signature" ? ["@method", "@target-uri", "content-digest"] : REQUIRED_COMPONENTS,
            ...(bug === "weak_signature"
              ? { created: Math.floor(Date.now() / 1000) - 1000 }
              : { nonce: bug === "reused_nonce_new_body" ? nonce : randomUUID() }),
          },
        ),
      );
      await fetch(url, { method: "POST", headers, body: bytes });
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  const server: Server = createServer(app);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanup.push(
    () =>
      new Promise<void>((r) => {
        server.close(() => {
          r();
        });
        server.closeAllConnections();
      }),
  );
  return `http://127.0.0.1:${String((server.address() as AddressInfo).port)}/trigger`;
}

describe("the sender checks", () => {
  it("catch a reused nonce and a retry with another body", async () => {
    const { kit, vendor } = await kitAndVendor();
    const { results } = await run(kit, vendor, await badSender(vendor, "reused_nonce_new_body"));
    expect(failed(results)).toEqual(["sender.nonce_unique", "sender.retry_same_body"]);
    expect(detail(results, "sender.nonce_unique")).toMatch(/the nonce .* was used 2 times/);
  });

  it("catch a signature that misses components, nonce and freshness", async () => {
    const { kit, vendor } = await kitAndVendor();
    const { results } = await run(kit, vendor, await badSender(vendor, "weak_signature"));
    expect(failed(results)).toEqual([
      "sender.signature_components",
      "sender.signature_valid",
      "sender.created_fresh",
      "sender.nonce_unique",
    ]);
    expect(detail(results, "sender.signature_components")).toContain(
      "does not cover content-type, idempotency-key",
    );
    expect(detail(results, "sender.created_fresh")).toMatch(/created 10\d\d s before it arrived/);
    expect(detail(results, "sender.nonce_unique")).toContain("no nonce");
  });

  it("catch a retry under a new Idempotency-Key", async () => {
    const { kit, vendor } = await kitAndVendor();
    const trigger = await badSender(vendor, "new_key_per_attempt");
    const { results } = await kit.run({
      webhook: vendor.webhookUrl,
      vendorKeyId: "refmsg-1",
      vendorPublicKey: vendorJwk,
      trigger,
      timeoutMs: 1500,
    });
    expect(failed(results)).toEqual(["sender.retries_after_503", "sender.retry_same_body"]);
    expect(detail(results, "sender.retries_after_503")).toContain(
      "expected a retry with the same Idempotency-Key",
    );
  });
});

describe("cli.ts", () => {
  const cli = join(import.meta.dirname, "cli.ts");
  const runCli = (args: string[]) => {
    const child = spawn(process.execPath, [cli, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    return new Promise<{ code: number | null; stdout: string; stderr: string }>((r) =>
      child.on("exit", (code) => {
        r({ code, stdout, stderr });
      }),
    );
  };

  it("prints a line per check and a summary; exit 0 when all passed, 1 when one failed", async () => {
    const dir = mkdtempSync(join(tmpdir(), "medmesh-conformance-cli-"));
    const medmeshKeys = generateKeyPairSync("ed25519");
    writeFileSync(join(dir, "medmesh.jwk"), JSON.stringify(medmeshKeys.privateKey.export({ format: "jwk" })));
    writeFileSync(join(dir, "vendor.pub.pem"), vendorKeys.publicKey.export({ format: "pem", type: "spki" }));
    for (const broken of [undefined, { accept_unsigned: true }]) {
      const port = await freePort();
      const vendor = await startReferenceVendor({
        dataFile: join(dir, `vendor-${String(port)}.sqlite`),
        listen: { host: "127.0.0.1", port: 0 },
        vendorId: "refmsg",
        keyId: "refmsg-1",
        privateKey: vendorKeys.privateKey,
        medmesh: {
          url: `http://127.0.0.1:${String(port)}`,
          keyId: "medmesh-ci",
          publicKey: medmeshKeys.publicKey.export({ format: "jwk" }),
        },
        log,
        ...(broken ? { broken } : {}),
      });
      cleanup.push(() => vendor.stop());
      const r = await runCli([
        "--webhook",
        vendor.webhookUrl,
        "--vendor-key-id",
        "refmsg-1",
        "--vendor-public-key",
        join(dir, "vendor.pub.pem"),
        "--trigger",
        `${vendor.url}/api/conformance/trigger`,
        "--listen",
        `127.0.0.1:${String(port)}`,
        "--medmesh-private-key",
        join(dir, "medmesh.jwk"),
        "--medmesh-key-id",
        "medmesh-ci",
        "--timeout",
        "10",
      ]);
      const lines = r.stdout.split("\n");
      const total = WEBHOOK_CHECKS.length + SENDER_CHECKS.length;
      if (!broken) {
        expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
        expect(lines.filter((l) => l.startsWith("PASS ")).map((l) => l.slice(5))).toEqual([
          ...WEBHOOK_CHECKS,
          ...SENDER_CHECKS,
        ]);
        expect(lines).toContain(`${String(total)} passed, 0 failed`);
      } else {
        expect(r.code).toBe(1);
        expect(lines.filter((l) => l.startsWith("FAIL "))).toEqual([
          expect.stringMatching(/^FAIL webhook\.rejects_unsigned: expected 401 M_UNAUTHORIZED .*, got 200/),
        ]);
        expect(lines).toContain(`${String(total - 1)} passed, 1 failed`);
      }
      expect(r.stdout).toContain(`MedMesh URL:        http://127.0.0.1:${String(port)}`);
    }
  });

  it("exits 2 with the usage on a bad command line", async () => {
    const missing = await runCli(["--vendor-key-id", "x"]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("--webhook is required");
    expect(missing.stderr).toContain("usage:");
    const badKey = await runCli([
      "--webhook",
      "http://127.0.0.1:9/hook",
      "--vendor-key-id",
      "x",
      "--vendor-public-key",
      '{"kty":"OKP"}',
    ]);
    expect(badKey.code).toBe(2);
    expect(badKey.stderr).toContain("--vendor-public-key: not a public key");
    const unknown = await runCli(["--frobnicate"]);
    expect(unknown.code).toBe(2);
  });
});
