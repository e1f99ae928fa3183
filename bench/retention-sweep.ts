/**
 * The retention sweep, side by side with Synapse's own admin redaction, in one run on one network.
 *   npm run bench:retention        (BENCH_EVENTS=500 BENCH_INDEXED=1000000 to change the sizes)
 * 1. Throughput: N expired events in a room MedMesh sweeps vs. N events in another room redacted by
 *    Synapse's admin API (`POST /_synapse/admin/v1/user/{userId}/redact`), events per second.
 * 2. A sweep that finds nothing expired among BENCH_INDEXED indexed events (the real sweep
 *    endpoint of the running service, whose store then holds that many index rows).
 * 3. The media step over BENCH_UPLOADS local uploads of BENCH_UPLOADERS users vs. Synapse's own
 *    delete-by-date over as many (bench/retention-media.ts); BENCH_UPLOADS=0 skips it.
 */
import { createSynapseAdmin } from "@medmesh/common";
import { adminApi, startTestNetwork } from "../tests/harness/index.ts";
import { benchMediaStep } from "./retention-media.ts";

const EVENTS = Number(process.env.BENCH_EVENTS ?? 500);
const INDEXED = Number(process.env.BENCH_INDEXED ?? 1_000_000);
const UPLOADS = Number(process.env.BENCH_UPLOADS ?? 100_000);
const UPLOADERS = Number(process.env.BENCH_UPLOADERS ?? 1_000);
const DAY = 86_400_000;

const net = await startTestNetwork({ name: "bench-retention", organisations: 1 });
try {
  const org = net.orgs[0];
  if (!org) throw new Error("no organisation");
  const policy = org.services.find((s) => s.name === "policy-module");
  const bridge = org.services.find((s) => s.name === "bridge");
  if (!policy || !bridge) throw new Error("services missing");
  const enc = encodeURIComponent;
  const sender = `@bridge_bench:${org.serverName}`;
  // The bridge's appservice sends back-dated events (the `ts` parameter) as its own user.
  const asSender = async (method: string, path: string, body: unknown, ts?: number) => {
    const url = new URL(path, org.synapseUrl);
    url.searchParams.set("user_id", sender);
    if (ts !== undefined) url.searchParams.set("ts", String(ts));
    const res = await fetch(url, {
      method,
      headers: {
        authorization: `Bearer ${bridge.registration.as_token}`,
        "content-type": "application/json",
      },
      body: JSON.stringify(body),
    });
    return (await res.json()) as { room_id?: string; event_id?: string; errcode?: string };
  };
  const policyAdmin = adminApi(org, "policy-module");
  const internal = (path: string, body: unknown = {}) => policyAdmin.json("POST", path, body);
  const fill = async (roomId: string): Promise<void> => {
    for (let i = 0; i < EVENTS; i++)
      await asSender(
        "PUT",
        `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/b-${roomId}-${String(i)}`,
        { msgtype: "m.text", body: `old ${String(i)}` },
        Date.now() - 40 * DAY,
      );
  };

  await asSender("POST", "/_matrix/client/v3/register", {
    type: "m.login.application_service",
    username: "bridge_bench",
    inhibit_login: true,
  });
  // Room S: MedMesh sweeps it (the back-fill makes the bot its admin and indexes it).
  const { room_id: swept } = await asSender("POST", "/_matrix/client/v3/createRoom", {});
  if (!swept) throw new Error("could not create a room");
  await fill(swept);
  await internal("/_medmesh/admin/v1/retention/backfill");
  // MedMesh's sweep: redactions (sequential, journalled), then purge and media steps.
  const sweepStart = performance.now();
  const sweep = await internal("/_medmesh/admin/v1/retention/sweep");
  const sweepSeconds = (performance.now() - sweepStart) / 1000;
  if (sweep.redacted !== EVENTS)
    throw new Error(`the sweep redacted ${String(sweep.redacted)} of ${String(EVENTS)}`);

  // Synapse alone: its admin redaction of the same number of events, in a room filled only now
  // (every sweep first indexes the rooms new to the server).
  const { room_id: direct } = await asSender("POST", "/_matrix/client/v3/createRoom", {});
  if (!direct) throw new Error("could not create a room");
  await fill(direct);
  const admin = createSynapseAdmin({ url: org.synapseUrl, registrationSharedSecret: org.registrationSecret });
  const directStart = performance.now();
  const { redact_id } = await admin.request<{ redact_id: string }>(
    "POST",
    `/_synapse/admin/v1/user/${enc(sender)}/redact`,
    { rooms: [direct], reason: "bench" },
  );
  for (;;) {
    const s = await admin.request<{ status: string; failed_redactions: Record<string, string> }>(
      "GET",
      `/_synapse/admin/v1/user/redact_status/${enc(redact_id)}`,
    );
    if (s.status === "complete" || s.status === "failed") {
      if (Object.keys(s.failed_redactions).length > 0) throw new Error("Synapse's admin redaction failed");
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const directSeconds = (performance.now() - directStart) / 1000;

  // 2. Nothing expired among INDEXED index rows (after a sweep that takes in room R, new to it).
  await internal("/_medmesh/admin/v1/retention/sweep");
  const knex = policy.store.knex;
  const now = Date.now();
  for (let i = 0; i < INDEXED; i += 10_000) {
    await knex.raw(
      `INSERT INTO retention_events (event_id, room_id, sender, type, origin_ts)
       SELECT '$bench-' || g, '!bench:' || (g % 1000), '@u:bench', 'm.room.message', ?::bigint - (g % 86400000)
       FROM generate_series(?::int, ?::int) AS g`,
      [now, i, Math.min(i + 9_999, INDEXED - 1)],
    );
  }
  await knex.raw("ANALYZE retention_events");
  const idleStart = performance.now();
  const idle = await internal("/_medmesh/admin/v1/retention/sweep");
  const idleSeconds = (performance.now() - idleStart) / 1000;
  if (idle.redacted !== 0) throw new Error("the idle sweep redacted something");

  // 3. The media step. The synthetic index rows go first: its sweep runs a year ahead, where they
  // would all be due (in rooms that do not exist).
  await knex("retention_events").where("event_id", "like", "$bench-%").delete();
  const media =
    UPLOADS > 0 ? await benchMediaStep(org, bridge.registration.as_token, UPLOADS, UPLOADERS) : undefined;

  const row = (label: string, a: string, b: string): void => {
    console.log(`${label.padEnd(40)}${a.padStart(16)}${b.padStart(16)}`);
  };
  row("", "Synapse alone", "MedMesh sweep");
  row(`redact ${String(EVENTS)} events (s)`, directSeconds.toFixed(2), sweepSeconds.toFixed(2));
  row("events per second", (EVENTS / directSeconds).toFixed(1), (EVENTS / sweepSeconds).toFixed(1));
  console.log(
    `throughput ratio ${(directSeconds / sweepSeconds).toFixed(3)} (the sweep includes its history purge and media steps)`,
  );
  console.log(
    `sweep with nothing expired among ${String(INDEXED)} indexed events: ${idleSeconds.toFixed(3)} s`,
  );
  if (media) {
    row(
      `delete ${String(media.uploads)} uploads (s)`,
      media.synapseSeconds.toFixed(2),
      media.sweepSeconds.toFixed(2),
    );
    row("files deleted", String(media.synapseDeleted), String(media.sweepDeleted));
    console.log(
      `media step / Synapse's delete-by-date: ${(media.sweepSeconds / media.synapseSeconds).toFixed(2)}x (${String(media.uploaders)} users; the sweep's requests to the per-user media API: ${String(media.perUserRequests)})`,
    );
  }
  console.log(
    "targets: throughput ratio >= 0.8; idle sweep over 1,000,000 indexed events < 1 s; media step <= 2x Synapse's delete-by-date, no per-user requests",
  );
} finally {
  await net.stop(false);
}
