/**
 * isVerified as the proxy calls it on every invite and directory answer, from its caches:
 *   npm run bench:is-verified        (BENCH_CLINICIANS=100000 BENCH_CALLS=200000)
 * - local: the organisation's verified clinicians (in memory, loaded from the store);
 * - remote: another organisation's user whose signed attestation is cached (the first call
 *   fetched and checked it; the rest answer from the cache until expiry or the refresh interval).
 * Beside them: a plain Map look-up, the floor any cache has.
 */
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger, createStore } from "@medmesh/common";
import { signAttestation } from "../policy-module/src/identity/attestation.ts";
import { storedClinicians } from "../policy-module/src/identity/clinicians.ts";
import { IDENTITY_MIGRATIONS } from "../policy-module/src/identity/migrations.ts";
import { verificationRecords } from "../policy-module/src/identity/records.ts";
import { createRemoteVerification } from "../policy-module/src/identity/remote.ts";
import { publicJwkOf } from "../policy-module/src/trust/trust-list.ts";

const COUNT = Number(process.env.BENCH_CLINICIANS ?? 100_000);
const CALLS = Number(process.env.BENCH_CALLS ?? 200_000);

const store = await createStore(
  {
    type: "pglite",
    data_dir: mkdtempSync(join(tmpdir(), "medmesh-bench-isverified-")),
  },
  { migrations: IDENTITY_MIGRATIONS },
);
try {
  const now = new Date();
  const expires = new Date(now.getTime() + 86_400_000);
  for (let i = 0; i < COUNT; i += 1000) {
    await store.knex("clinician_verifications").insert(
      Array.from({ length: Math.min(1000, COUNT - i) }, (_, k) => ({
        user_id: `@c${String(i + k)}:a.example`,
        registry: "BIG",
        registration_number: String(10_000_000_000 + i + k),
        claimed_name: "x",
        registered_name: "x",
        profession: "physician",
        specialisms: "[]",
        status: "verified",
        verified_at: now,
        expires_at: expires,
        attempts: 0,
        updated_at: now,
      })),
    );
  }
  const local = await storedClinicians(verificationRecords(store.knex));

  // A peer that has one verified clinician; the network fetch happens once, then the cache answers.
  const { privateKey } = generateKeyPairSync("ed25519");
  const key = { kid: "b-1", privateKey };
  const jws = signAttestation(key, {
    iss: "b.example",
    sub: "@bea:b.example",
    profession: "nurse",
    registry: "BIG",
    verified_at: now.toISOString(),
    exp: Math.floor(expires.getTime() / 1000),
    iat: Math.floor(now.getTime() / 1000),
  });
  let fetches = 0;
  const remote = createRemoteVerification({
    peers: {
      getJson: () => {
        fetches++;
        return Promise.resolve({ attestation: jws });
      },
    },
    trust: {
      isTrusted: () => true,
      attestationKeys: () => [{ ...publicJwkOf(privateKey.export({ format: "jwk" })), kid: "b-1" }],
    },
    refreshMs: 300_000,
    timeoutMs: 1000,
    revokedAt: () => Promise.resolve(undefined),
    log: createLogger("bench", "silent"),
  });
  const plain = new Map(Array.from({ length: COUNT }, (_, i) => [`@c${String(i)}:a.example`, true]));

  const measure = async (f: (i: number) => Promise<boolean> | boolean): Promise<number[]> => {
    const times: number[] = [];
    for (let i = 0; i < CALLS; i++) {
      const started = process.hrtime.bigint();
      if (!(await f(i))) throw new Error("expected verified");
      times.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    return times.sort((a, b) => a - b);
  };
  const pct = (xs: number[], p: number): string =>
    (xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] ?? NaN).toFixed(4);
  const rows: [string, number[]][] = [
    ["Map.get (floor)", await measure((i) => plain.get(`@c${String(i % COUNT)}:a.example`) ?? false)],
    ["local isVerified", await measure((i) => local.isVerified(`@c${String(i % COUNT)}:a.example`))],
    ["remote isVerified", await measure(() => remote.isVerified("@bea:b.example"))],
  ];
  console.log(`isVerified from cache, ${String(COUNT)} verified clinicians, ${String(CALLS)} calls each:`);
  for (const [name, t] of rows)
    console.log(`  ${name.padEnd(20)} p50 ${pct(t, 0.5)} ms   p99 ${pct(t, 0.99)} ms`);
  console.log(`  (remote attestation fetched ${String(fetches)} time(s), then served from the cache)`);
  const worst = Math.max(...rows.slice(1).map(([, t]) => Number(pct(t, 0.99))));
  console.log(`target: p99 <= 1 ms -> ${worst <= 1 ? "met" : "NOT met"}`);
} finally {
  await store.close();
}
