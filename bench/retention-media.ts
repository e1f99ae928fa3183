/**
 * The retention sweep's media step over many local uploads, side by side with Synapse's own
 * delete-by-date call (`POST /_synapse/admin/v1/media/delete`) over as many, in one run.
 * Part of `npm run bench:retention` (BENCH_UPLOADS=100000 BENCH_UPLOADERS=1000 to change sizes).
 * Counts the sweep's requests to Synapse's per-user media API in Synapse's access log: none.
 */
import { open, stat } from "node:fs/promises";
import { createSynapseAdmin } from "@medmesh/common";
import type { RunningOrganisation } from "@medmesh/deploy";
import { Agent, fetch as patientFetch } from "undici";
import { adminApi } from "../tests/harness/index.ts";

const DAY = 86_400_000;
const CONCURRENCY = 16;

export interface MediaBenchResult {
  uploads: number;
  uploaders: number;
  synapseSeconds: number;
  synapseDeleted: number;
  sweepSeconds: number;
  sweepDeleted: number;
  perUserRequests: number;
}

export async function benchMediaStep(
  org: RunningOrganisation,
  asToken: string,
  uploads: number,
  uploaders: number,
): Promise<MediaBenchResult> {
  const users = Array.from({ length: uploaders }, (_, i) => `@bridge_media${String(i)}:${org.serverName}`);
  const as = async (
    method: string,
    path: string,
    userId: string,
    body: string | Uint8Array,
    type: string,
  ) => {
    const url = new URL(path, org.synapseUrl);
    url.searchParams.set("user_id", userId);
    const res = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${asToken}`, "content-type": type },
      body,
    });
    const text = await res.text();
    if (!res.ok && !text.includes("M_USER_IN_USE")) throw new Error(`${path}: ${String(res.status)} ${text}`);
  };
  await pool(users, (u) =>
    as(
      "POST",
      "/_matrix/client/v3/register",
      u,
      JSON.stringify({
        type: "m.login.application_service",
        username: u.slice(1, u.indexOf(":")),
        inhibit_login: true,
      }),
      "application/json",
    ),
  );
  const fill = async (): Promise<void> => {
    const jobs = Array.from({ length: uploads }, (_, i) => i);
    await pool(jobs, (i) =>
      as(
        "POST",
        `/_matrix/media/v3/upload?filename=f${String(i)}.bin`,
        users[i % users.length] ?? "",
        new Uint8Array(64).fill(i % 251),
        "application/octet-stream",
      ),
    );
  };

  // Synapse alone: its delete-by-date over `uploads` files.
  let t = performance.now();
  await fill();
  console.log(`uploaded ${String(uploads)} files of ${String(uploaders)} users in ${sec(t)} s`);
  const admin = createSynapseAdmin({ url: org.synapseUrl, registrationSharedSecret: org.registrationSecret });
  t = performance.now();
  const alone = await admin.request<{ total: number }>(
    "POST",
    `/_synapse/admin/v1/media/delete?before_ts=${String(Date.now() + 1000)}&keep_profiles=true`,
    {},
    { timeoutMs: 60 * 60_000 },
  );
  const synapseSeconds = (performance.now() - t) / 1000;

  // MedMesh: a sweep whose period ended for as many files (its whole media step included).
  await fill();
  const log = org.paths.logFile;
  const offset = (await stat(log)).size;
  t = performance.now();
  // One long request: past the global fetch's 300 s headers timeout at 100,000 uploads.
  const api = adminApi(org, "policy-module");
  const res = await patientFetch(`${api.url}/_medmesh/admin/v1/retention/sweep`, {
    method: "POST",
    headers: { authorization: `Bearer ${api.token}`, "content-type": "application/json" },
    body: JSON.stringify({ now: new Date(Date.now() + 400 * DAY).toISOString() }),
    dispatcher: new Agent({ headersTimeout: 0, bodyTimeout: 0 }),
  });
  if (!res.ok) throw new Error(`sweep: ${String(res.status)} ${await res.text()}`);
  const sweep = (await res.json()) as { media_deleted: number };
  const sweepSeconds = (performance.now() - t) / 1000;
  return {
    uploads,
    uploaders,
    synapseSeconds,
    synapseDeleted: alone.total,
    sweepSeconds,
    sweepDeleted: sweep.media_deleted,
    perUserRequests: await countSince(log, offset, /\/_synapse\/admin\/v[0-9]+\/users\/[^ ]*\/media/),
  };
}

async function pool<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < items.length) {
        const item = items[next++] as T;
        await work(item);
      }
    }),
  );
}

/** Lines matching `pattern` that Synapse logged after `offset` (its access log lines). */
async function countSince(file: string, offset: number, pattern: RegExp): Promise<number> {
  const size = (await stat(file)).size;
  const from = size < offset ? 0 : offset; // rotated meanwhile: the new file holds the window
  const fh = await open(file);
  try {
    const buf = Buffer.alloc(size - from);
    await fh.read(buf, 0, buf.length, from);
    return buf
      .toString("utf8")
      .split("\n")
      .filter((l) => pattern.test(l)).length;
  } finally {
    await fh.close();
  }
}

const sec = (t: number): string => ((performance.now() - t) / 1000).toFixed(1);
