/**
 * A broadcast to a channel of N members across two organisations, side by side with the same
 * message sent by a plain Matrix client (matrix-js-sdk, Rust crypto) into an encrypted room of the
 * same members on the same Synapse ("Synapse alone": no channel bot, no console, no reconciler).
 *   npm run bench:broadcast             (BENCH_MEMBERS=300 BENCH_REMOTE_SHARE=0.5 BENCH_POSTS=5)
 * Members are verified clinicians of A and B (the deployment's list), registered and joined by the
 * bench; they have no end-to-end devices (no room keys to share with them), so the figures hold the
 * fan-out, federation and MedMesh's own work, not per-device key sharing. Measured: from the
 * request until the event is on B's server (every member's server), p50 over BENCH_POSTS posts;
 * the policy module's own cost per member: the reconciliation that invites them, and the read /
 * acknowledged statistics. From 500 members (or BENCH_PROCESSES=1) each organisation's policy
 * module runs as a process of its own, as in production.
 */
import { randomBytes } from "node:crypto";
import { Agent, setGlobalDispatcher } from "undici";
import { adminApi, startClient, startTestNetwork, type TestUser } from "../tests/harness/index.ts";
import { policyModuleReplica, type ReplicaProcess } from "../tests/harness/replica-process.ts";

// A Synapse busy with joins to a room of thousands can leave a new connection unaccepted for tens
// of seconds, and the channel's first reconciliation answers only when every member is invited:
// every request of the bench (and of the clients it starts) waits instead of failing after
// fetch's default 10 s connect and 300 s headers timeouts.
setGlobalDispatcher(new Agent({ connect: { timeout: 120_000 }, headersTimeout: 0, bodyTimeout: 0 }));

const MEMBERS = Number(process.env.BENCH_MEMBERS ?? 300);
const REMOTE_SHARE = Number(process.env.BENCH_REMOTE_SHARE ?? 0.5);
const POSTS = Number(process.env.BENCH_POSTS ?? 5);
const CONCURRENCY = 8;
// Each organisation's policy module as a process of its own (its own event loop, as in
// production), not inside the bench's: with thousands of members the bench's own requests kept
// the in-process services from answering Synapse's decisions in time. Default from 500 members.
const PROCESSES = (process.env.BENCH_PROCESSES ?? (MEMBERS >= 500 ? "1" : "0")) === "1";
const remote = Math.round(MEMBERS * REMOTE_SHARE);
const local = MEMBERS - remote;
const names = (prefix: string, n: number) =>
  Array.from({ length: n }, (_, i) => ({
    localpart: `${prefix}${String(i)}`,
    display_name: `Member ${prefix}${String(i)}`,
    profession: "pharmacist",
  }));
const enc = encodeURIComponent;
const ms = (since: bigint): number => Number(process.hrtime.bigint() - since) / 1e6;
const p50 = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;

const started = Date.now();
const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(0)} s`;
const net = await startTestNetwork({
  name: "bench-broadcast",
  organisations: 2,
  // Thousands of members: both Synapses and stores on PostgreSQL when a server is given.
  ...(process.env.MEDMESH_TEST_POSTGRES_URL ? { postgresUrl: process.env.MEDMESH_TEST_POSTGRES_URL } : {}),
  verifiedClinicians: {
    0: [...names("a", local), { localpart: "pub", display_name: "Publisher", profession: "physician" }],
    1: names("b", remote),
  },
});
const processes: ReplicaProcess[] = [];
try {
  const [a, b] = net.orgs;
  if (!a || !b) throw new Error("two organisations expected");
  if (PROCESSES)
    for (const o of [a, b]) {
      await o.services.find((s) => s.name === "policy-module")?.stop();
      const pmProcess = await policyModuleReplica(o, net.dataDir, "bench", {
        ownPorts: false,
        leaseSeconds: 30,
      });
      await pmProcess.process.start();
      processes.push(pmProcess);
      console.log(`${o.serverName}: policy module as a process of its own (${elapsed()})`);
    }
  const inParallel = async <T>(items: T[], fn: (x: T) => Promise<void>): Promise<void> => {
    const queue = [...items];
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        for (let x = queue.shift(); x !== undefined; x = queue.shift()) await fn(x);
      }),
    );
  };
  const members: TestUser[] = [];
  await inParallel(
    [
      ...names("a", local).map((n) => [a, n.localpart] as const),
      ...names("b", remote).map((n) => [b, n.localpart] as const),
    ],
    async ([o, lp]) => {
      members.push(await net.registerUser(o, lp));
    },
  );
  const publisher = await net.registerUser(a, "pub");
  const reader = members.find((m) => m.org === b) ?? members[0];
  if (!reader) throw new Error("no members");
  // Patient by the global dispatcher above: no retry of its own.
  const call = async (u: TestUser, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${u.org.synapseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${u.accessToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as Record<string, unknown> };
  };
  /**
   * Until a request is answered 200, 5 tries at most: a join can race its invite, and a decision the
   * module could not ask is refused "try again shortly" (fail closed) on a loaded machine.
   */
  const until200 = async (what: string, send: () => ReturnType<typeof call>): Promise<void> => {
    let last = {};
    for (let i = 0; i < 5; i++) {
      const r = await send();
      if (r.status === 200) return;
      last = r;
      await new Promise((res) => setTimeout(res, 200 * (i + 1)));
    }
    throw new Error(`${what}: ${JSON.stringify(last)}`);
  };
  const joinAll = (roomId: string) => {
    let joined = 0;
    return inParallel(members, async (m) => {
      await until200(`${m.userId} could not join ${roomId}`, () =>
        call(m, "POST", `/_matrix/client/v3/join/${enc(roomId)}?server_name=${enc(a.serverName)}`, {}),
      );
      if (++joined % 500 === 0) console.log(`${String(joined)} joined ${roomId} (${elapsed()})`);
    });
  };
  /** Until B's server has the event (a B member can fetch it there). */
  const onB = async (roomId: string, eventId: string): Promise<void> => {
    for (;;) {
      const r = await call(reader, "GET", `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(eventId)}`);
      if (r.status === 200) return;
      await new Promise((res) => setTimeout(res, 10));
    }
  };

  // MedMesh: a network channel; its first reconciliation invites every member.
  const pm = adminApi(a, "policy-module");
  const t0 = process.hrtime.bigint();
  // The first reconciliation runs inside the request (no headers timeout: the dispatcher above).
  const channel = await pm.json<{ room_id: string; invited: number }>("POST", "/_medmesh/admin/v1/channels", {
    name: `Bench ${randomBytes(3).toString("hex")}`,
    scope: "network",
    publishers: [publisher.userId],
  });
  const reconcileMs = ms(t0);
  if (channel.invited < MEMBERS) throw new Error(`invited ${String(channel.invited)} of ${String(MEMBERS)}`);
  await joinAll(channel.room_id);
  const medmesh: { api: number[]; onB: number[] } = { api: [], onB: [] };
  for (let i = 0; i < POSTS; i++) {
    const s = process.hrtime.bigint();
    const { event_id } = await pm.json<{ event_id: string }>(
      "POST",
      `/_medmesh/admin/v1/channels/${enc(channel.room_id)}/posts`,
      { body: `Recall ${String(i)}`, urgent: true },
    );
    medmesh.api.push(ms(s));
    await onB(channel.room_id, event_id);
    medmesh.onB.push(ms(s));
  }
  const s1 = process.hrtime.bigint();
  const urgent = await pm.json<{ posts: { event_id: string; members: number }[] }>(
    "GET",
    `/_medmesh/admin/v1/channels/${enc(channel.room_id)}/urgent`,
  );
  const statsMs = ms(s1) / Math.max(1, urgent.posts.length);
  console.log(
    `MedMesh channel (${String(MEMBERS)} members): post answered p50 ${p50(medmesh.api).toFixed(1)} ms, ` +
      `on B p50 ${p50(medmesh.onB).toFixed(1)} ms, reconcile ${(reconcileMs / 1000).toFixed(1)} s, ` +
      `stats per member ${(statsMs / MEMBERS).toFixed(3)} ms`,
  );

  // Synapse alone: the publisher's own encrypting client, a room of the same members.
  const client = await startClient(a.synapseUrl, publisher);
  const { room_id: plain } = await client.createRoom({
    initial_state: [
      { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
    ],
  });
  const t1 = process.hrtime.bigint();
  await inParallel(members, async (m) => {
    await until200(`${m.userId} could not be invited to ${plain}`, () =>
      call(publisher, "POST", `/_matrix/client/v3/rooms/${enc(plain)}/invite`, { user_id: m.userId }),
    );
  });
  const invitesAloneMs = ms(t1);
  await joinAll(plain);
  for (let i = 0; i < 50 && (client.getRoom(plain)?.getJoinedMemberCount() ?? 0) <= MEMBERS; i++)
    await new Promise((r) => setTimeout(r, 200));
  const alone: { api: number[]; onB: number[] } = { api: [], onB: [] };
  for (let i = 0; i < POSTS; i++) {
    const s = process.hrtime.bigint();
    const { event_id } = await client.sendTextMessage(plain, `Recall ${String(i)}`);
    alone.api.push(ms(s));
    await onB(plain, event_id);
    alone.onB.push(ms(s));
  }
  client.stopClient();

  const row = (label: string, x: string, y: string): void => {
    console.log(`${label.padEnd(44)}${x.padStart(16)}${y.padStart(16)}`);
  };
  console.log(
    `${String(MEMBERS)} members (${String(local)} on A, ${String(remote)} on B), ${String(POSTS)} posts each`,
  );
  row("", "Synapse alone", "MedMesh channel");
  row("post answered, p50 (ms)", p50(alone.api).toFixed(1), p50(medmesh.api).toFixed(1));
  row("on every member's server (B), p50 (ms)", p50(alone.onB).toFixed(1), p50(medmesh.onB).toFixed(1));
  row(
    "creating the room, inviting every member (s)",
    (invitesAloneMs / 1000).toFixed(1),
    (reconcileMs / 1000).toFixed(1),
  );
  row("  per member (ms)", (invitesAloneMs / MEMBERS).toFixed(2), (reconcileMs / MEMBERS).toFixed(2));
  row("read/ack statistics of one post, per member (ms)", "", (statsMs / MEMBERS).toFixed(3));
  console.log(`(bench ran ${((Date.now() - started) / 1000).toFixed(0)} s in all)`);
} finally {
  for (const p of processes) await p.process.stop("SIGTERM");
  await net.stop(false);
}
