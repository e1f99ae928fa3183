/**
 * The admin console's API under the members and audit pages, with 10,000 users and 100,000 audit
 * records, in one run on one network (PostgreSQL for Synapse and the store, as in production):
 *   MEDMESH_TEST_POSTGRES_URL=… npm run bench:console     (BENCH_USERS, BENCH_AUDIT, BENCH_CALLS)
 * Users are written straight into Synapse's tables and audit records (a valid hash chain) into
 * the store's: registering 10,000 accounts through the API would take longer than everything else.
 * Each page's calls are timed through the proxy with a real console session; p50/p95 per call.
 */
import { createHash } from "node:crypto";
import knexFactory from "knex";
import { canonicalJson, registerWithSharedSecret } from "@medmesh/common";
import { openSynapseDb, startTestNetwork } from "../tests/harness/index.ts";

const USERS = Number(process.env.BENCH_USERS ?? 10_000);
const AUDIT = Number(process.env.BENCH_AUDIT ?? 100_000);
const CALLS = Number(process.env.BENCH_CALLS ?? 100);
const postgresUrl = process.env.MEDMESH_TEST_POSTGRES_URL;
if (!postgresUrl) throw new Error("set MEDMESH_TEST_POSTGRES_URL (.ci/start-postgres.sh prints one)");

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

const net = await startTestNetwork({ name: "bench-console", organisations: 1, postgresUrl });
let failed = false;
try {
  const org = net.orgs[0];
  if (!org) throw new Error("no organisation");
  const server = org.serverName;
  const seedStart = Date.now();
  const synapse = openSynapseDb(org);
  const now = Date.now();
  for (let i = 0; i < USERS; i += 1000) {
    const n = Math.min(1000, USERS - i);
    const ids = Array.from({ length: n }, (_, k) => i + k);
    await synapse.run(
      `INSERT INTO users (name, password_hash, creation_ts, admin, is_guest, deactivated, approved, locked, suspended) VALUES ${ids.map(() => "(?, NULL, ?, 0, 0, 0, true, false, false)").join(",")}`,
      ids.flatMap((k) => [`@member${String(k)}:${server}`, Math.floor(now / 1000)]),
    );
    await synapse.run(
      `INSERT INTO profiles (user_id, full_user_id, displayname) VALUES ${ids.map(() => "(?, ?, ?)").join(",")}`,
      ids.flatMap((k) => [`member${String(k)}`, `@member${String(k)}:${server}`, `Member ${String(k)}`]),
    );
  }
  await synapse.close();

  const storeConfig = org.org.store;
  if (storeConfig.type !== "postgres") throw new Error("the bench needs the store on PostgreSQL");
  const store = knexFactory({ client: "pg", connection: storeConfig.url, pool: { min: 0, max: 2 } });
  const verifications = Array.from({ length: Math.floor(USERS / 2) }, (_, k) => ({
    user_id: `@member${String(k * 2)}:${server}`,
    registry: "BIG",
    registration_number: String(10_000_000_000 + k),
    claimed_name: `Member ${String(k * 2)}`,
    registered_name: `Member ${String(k * 2)}`,
    profession: k % 3 ? "physician" : "nurse",
    specialisms: "[]",
    status: "verified",
    verified_at: new Date(),
    expires_at: new Date(now + 86_400_000),
    updated_at: new Date(),
  }));
  for (let i = 0; i < verifications.length; i += 1000)
    await store("clinician_verifications").insert(verifications.slice(i, i + 1000));
  // The audit chain continues from whatever the service wrote at start.
  const head = await store<{ hash: string }>("audit_log").orderBy("seq", "desc").first("hash");
  let prev = head?.hash ?? "0".repeat(64);
  const actions = [
    "identity.check",
    "identity.reverify",
    "console.sign_in",
    "retention.redact",
    "console.remote_wipe",
  ];
  for (let i = 0; i < AUDIT; i += 2000) {
    const rows = [];
    for (let k = i; k < Math.min(AUDIT, i + 2000); k++) {
      const row = {
        at: new Date(now - (AUDIT - k) * 1000).toISOString(),
        actor: k % 10 ? `@medmesh:${server}` : `@admin${String(k % 7)}:${server}`,
        on_behalf_of: null,
        action: actions[k % actions.length] ?? "x",
        object: `@member${String(k % USERS)}:${server}`,
        outcome: "ok",
        details: {},
      };
      const hash = createHash("sha256").update(prev).update(canonicalJson(row)).digest("hex");
      rows.push({ ...row, details: "{}", prev_hash: prev, hash });
      prev = hash;
    }
    await store("audit_log").insert(rows);
  }
  await store.raw("ANALYZE audit_log");
  await store.destroy();
  console.log(
    `seeded ${String(USERS)} users and ${String(AUDIT)} audit records in ${String(Date.now() - seedStart)} ms`,
  );

  const admin = await registerWithSharedSecret(org.synapseUrl, org.registrationSecret, {
    localpart: "bench-admin",
    password: "bench-admin-password",
    admin: true,
  });
  const res = await fetch(`${org.clientUrl}/_medmesh/console/api/v1/session`, {
    method: "POST",
    headers: { authorization: `Bearer ${admin.accessToken}` },
  });
  if (!res.ok) throw new Error(`no console session: ${await res.text()}`);
  const cookie = res.headers.getSetCookie()[0]?.split(";")[0] ?? "";
  const { csrf_token: csrf } = (await res.json()) as { csrf_token: string };
  const deep = AUDIT - 50_000;
  const calls: [string, string][] = [
    ["members: first page", "/users?limit=50"],
    ["members: search", "/users?q=member12&limit=50"],
    ["members: details", `/users/${encodeURIComponent(`@member4242:${server}`)}`],
    ["audit: newest page", "/audit?limit=50"],
    ["audit: page 1000 deep", `/audit?limit=50&before=${String(deep)}`],
    ["audit: by actor", `/audit?limit=50&actor=${encodeURIComponent(`@admin3:${server}`)}`],
    ["audit: by object", `/audit?limit=50&object=${encodeURIComponent(`@member77:${server}`)}`],
    ["audit: action prefix", "/audit?limit=50&action=console."],
    [
      "audit: time range",
      `/audit?limit=50&from=${new Date(now - 3_600_000).toISOString()}&to=${new Date(now - 1_800_000).toISOString()}`,
    ],
  ];
  const all: number[] = [];
  console.log(`${String(CALLS)} calls each, through the proxy with a console session:`);
  for (const [name, path] of calls) {
    const times: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const started = process.hrtime.bigint();
      const r = await fetch(`${org.clientUrl}/_medmesh/console/api/v1${path}`, { headers: { cookie } });
      if (!r.ok) throw new Error(`${name}: ${String(r.status)} ${await r.text()}`);
      await r.arrayBuffer();
      times.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    all.push(...times);
    console.log(
      `${name.padEnd(24)} p50 ${pct(times, 50).toFixed(1).padStart(7)} ms   p95 ${pct(times, 95).toFixed(1).padStart(7)} ms`,
    );
  }
  // "Verify chain" reads the whole log (in pages of 1000): not a page load, but timed here too.
  for (let i = 0; i < 3; i++) {
    const started = Date.now();
    const r = await fetch(`${org.clientUrl}/_medmesh/console/api/v1/audit/verify`, {
      method: "POST",
      headers: { cookie, "x-medmesh-csrf": csrf },
    });
    const report = (await r.json()) as { ok: boolean; records: number };
    console.log(
      `verify chain            ${String(Date.now() - started)} ms, ok ${String(report.ok)}, ${String(report.records)} records`,
    );
  }
  const p95 = pct(all, 95);
  console.log(`all calls               p95 ${p95.toFixed(1)} ms (target < 1000 ms)`);
  if (p95 >= 1000) failed = true;
} catch (err) {
  failed = true;
  console.error(err);
} finally {
  await net.stop(failed);
}
process.exitCode = failed ? 1 : 0;
