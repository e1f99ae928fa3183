/**
 * Re-verification of many clinicians against a registry test server that answers each look-up
 * after a fixed delay:
 *   npm run bench:reverify      (BENCH_CLINICIANS=100000 BENCH_DELAY_MS=20 BENCH_CONCURRENCY=64;
 *                                MEDMESH_TEST_POSTGRES_URL=… to use PostgreSQL instead of PGlite)
 * Printed beside the run: the registry-bound floor (clinicians × delay / concurrency), i.e. what
 * a client that did nothing but wait for the registry would take, and the process's peak RSS.
 */
import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { createLogger, createStore, createAuditLog, electedLeader } from "@medmesh/common";
import { IDENTITY_MIGRATIONS } from "../policy-module/src/identity/migrations.ts";
import { verificationRecords } from "../policy-module/src/identity/records.ts";
import { createReverifier, REVERIFY_JOB } from "../policy-module/src/identity/reverify.ts";
import { createRizivRegistry } from "../policy-module/src/identity/registries/riziv/client.ts";
import { numberOf } from "./registry-server.ts";
import { createVerifier } from "../policy-module/src/identity/verifier.ts";

const COUNT = Number(process.env.BENCH_CLINICIANS ?? 100_000);
const DELAY = Number(process.env.BENCH_DELAY_MS ?? 20);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 64);
const postgres = process.env.MEDMESH_TEST_POSTGRES_URL;

const child = spawn(
  process.execPath,
  [join(import.meta.dirname, "registry-server.ts"), String(COUNT), String(DELAY)],
  {
    stdio: ["ignore", "pipe", "inherit"],
  },
);
const registryUrl = await new Promise<string>((resolve, reject) => {
  child.stdout.once("data", (d: Buffer) => {
    resolve(d.toString().trim());
  });
  child.once("exit", (code) => {
    reject(new Error(`registry server exited with ${String(code)}`));
  });
});
const store = await createStore(
  postgres
    ? { type: "postgres", url: postgres, pool_max: 16 }
    : { type: "pglite", data_dir: mkdtempSync(join(tmpdir(), "medmesh-bench-reverify-")) },
  { migrations: IDENTITY_MIGRATIONS },
);
try {
  const records = verificationRecords(store.knex);
  await store.knex("clinician_verifications").delete();
  const now = new Date();
  const expires = new Date(now.getTime() + 30 * 86_400_000);
  for (let i = 0; i < COUNT; i += 1000) {
    await store.knex("clinician_verifications").insert(
      Array.from({ length: Math.min(1000, COUNT - i) }, (_, k) => ({
        user_id: `@c${numberOf(i + k)}:be.example`,
        registry: "RIZIV",
        registration_number: numberOf(i + k),
        claimed_name: `T. Clinician${String(i + k)}`,
        registered_name: `Test Clinician${String(i + k)}`,
        profession: "physician",
        specialisms: "[]",
        status: "verified",
        verified_at: now,
        expires_at: expires,
        last_checked_at: new Date(now.getTime() - 86_400_000),
        attempts: 0,
        updated_at: now,
      })),
    );
  }
  const log = createLogger("bench", "warn");
  const verifier = createVerifier({
    serverName: "be.example",
    records,
    registries: new Map([["RIZIV", createRizivRegistry({ url: registryUrl, timeoutMs: 5000 })]]),
    audit: createAuditLog(store.knex),
    log,
    validityMs: 30 * 86_400_000,
  });
  const reverifier = createReverifier({
    verifier,
    records,
    leader: await electedLeader(store, REVERIFY_JOB, log),
    knex: store.knex,
    documents: store.documents,
    config: { schedule: "0 3 * * *", concurrency: CONCURRENCY, rate_per_second: 100_000 },
    log,
    metrics: new Registry(),
  });
  const baseline = process.memoryUsage().rss;
  let peak = baseline;
  let heapPeak = process.memoryUsage().heapUsed;
  const sampler = setInterval(() => {
    const m = process.memoryUsage();
    peak = Math.max(peak, m.rss);
    heapPeak = Math.max(heapPeak, m.heapUsed);
  }, 100);
  const result = await reverifier.run();
  clearInterval(sampler);
  const floor = (COUNT * DELAY) / CONCURRENCY / 1000;
  console.log(
    `re-verification of ${String(COUNT)} clinicians, registry answering in ${String(DELAY)} ms, ${String(CONCURRENCY)} in flight, store ${postgres ? "PostgreSQL" : "PGlite"}:`,
  );
  console.log(
    `  MedMesh run            ${result.seconds.toFixed(1)} s  (${String(result.checked)} checked, ${String(result.revoked)} revoked)`,
  );
  console.log(`  registry-bound floor   ${floor.toFixed(1)} s`);
  console.log(
    `  peak RSS               ${(peak / 1024 / 1024).toFixed(0)} MiB (MedMesh's process; the registry runs in another), ` +
      `${(baseline / 1024 / 1024).toFixed(0)} MiB before the run; peak heap used ${(heapPeak / 1024 / 1024).toFixed(0)} MiB`,
  );
  console.log(
    `target: <= 180 s and <= 200 MB -> ${result.seconds <= 180 && peak <= 200 * 1024 * 1024 ? "met" : "NOT met"}`,
  );
  if (result.revoked !== Math.floor(COUNT / 1000))
    throw new Error(
      `expected ${String(Math.floor(COUNT / 1000))} revocations, got ${String(result.revoked)}`,
    );
} finally {
  await store.close();
  child.kill("SIGTERM");
}
