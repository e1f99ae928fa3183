/**
 * The bridge beside Synapse alone, in one run on one network (real Synapse, encrypted rooms):
 *   npm run bench:bridge        (BENCH_MESSAGES=200 to change the load)
 *
 * - vendor → Matrix latency: a vendor message until Alice's client has it decrypted, against a
 *   Matrix user's message in the same room (Synapse alone), interleaved;
 * - Matrix → vendor added latency: from the moment Synapse delivered the transaction to the bridge
 *   until the vendor's webhook has the event (the bridge's own records);
 * - throughput: a burst of messages until Alice has them all, vendor via the bridge vs. a Matrix
 *   user via Synapse alone;
 * - the bridge process's resident memory with 10,000 mapped conversations in its store
 *   (MEDMESH_TEST_POSTGRES_URL set: stores on PostgreSQL, as in production).
 */
import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { REPO_ROOT } from "@medmesh/deploy";
import { MsgType, RoomEvent, MatrixEventEvent, type MatrixClient, type MatrixEvent } from "matrix-js-sdk";
import { TestVendor } from "../tests/harness/interop-vendor.ts";
import { nextRoom, startTestNetwork, waitUntil } from "../tests/harness/index.ts";

const N = Number(process.env.BENCH_MESSAGES ?? 200);
const vendor = new TestVendor();
await vendor.start();
const postgresUrl = process.env.MEDMESH_TEST_POSTGRES_URL;
const net = await startTestNetwork({
  name: "bench-bridge",
  organisations: 1,
  ...(postgresUrl ? { postgresUrl } : {}),
  organisationSettings: { 0: { bridge_vendors: [vendor.setting] } },
});
const q = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))] ?? NaN;
};
const row = (label: string, a: string, b: string): void => {
  console.log(`${label.padEnd(44)}${a.padStart(16)}${b.padStart(16)}`);
};

/** Resolves when `client` has a decrypted message with this body. */
function arrival(client: MatrixClient, body: string): Promise<number> {
  return new Promise((resolve) => {
    const check = (e: MatrixEvent): void => {
      if (e.getContent().body === body) {
        client.off(RoomEvent.Timeline, check);
        client.off(MatrixEventEvent.Decrypted, check);
        resolve(performance.now());
      }
    };
    client.on(RoomEvent.Timeline, check);
    client.on(MatrixEventEvent.Decrypted, check);
  });
}

try {
  const org = net.orgs[0];
  if (!org) throw new Error("no organisation");
  vendor.connect(org.bridgeUrl, org.paths.bridgeSigningKey);
  const bridge = org.services.find((s) => s.name === "bridge");
  if (!bridge) throw new Error("no bridge");
  const alice = await net.client(await net.registerUser(org, "alice"));
  const bobUser = await net.registerUser(org, "bob");
  const bob = await net.client(bobUser);
  const aliceInvited = nextRoom(alice);
  const bobInvited = nextRoom(bob);
  await vendor.send({
    type: "conversation.create",
    conversation_id: "bench",
    kind: "group",
    creator: "anna",
    members: ["anna", alice.getUserId() ?? "", bobUser.userId],
  });
  const roomId = await aliceInvited;
  await alice.joinRoom(roomId);
  await bob.joinRoom(await bobInvited);
  await vendor.send({
    type: "message",
    conversation_id: "bench",
    message_id: "warm",
    sender: "anna",
    text: "warm-up",
  });
  await arrival(alice, "warm-up");
  await bob.sendMessage(roomId, { msgtype: MsgType.Text, body: "warm-up 2" });
  await arrival(alice, "warm-up 2");

  process.stderr.write("bench: latency\n");
  // Latency, interleaved: vendor via the bridge, and Bob via Synapse alone.
  const viaBridge: number[] = [];
  const direct: number[] = [];
  for (let i = 0; i < N; i++) {
    let text = `lat-v-${String(i)}`;
    let seen = arrival(alice, text);
    let t0 = performance.now();
    await vendor.send({
      type: "message",
      conversation_id: "bench",
      message_id: randomUUID(),
      sender: "anna",
      text,
    });
    viaBridge.push((await seen) - t0);
    text = `lat-m-${String(i)}`;
    seen = arrival(alice, text);
    t0 = performance.now();
    await bob.sendMessage(roomId, { msgtype: MsgType.Text, body: text });
    direct.push((await seen) - t0);
  }

  process.stderr.write("bench: matrix-to-vendor\n");
  // Matrix → vendor: Alice's messages; the bridge's records say when Synapse delivered each
  // transaction and when the webhook had it.
  for (let i = 0; i < N; i++) {
    const text = `out-${String(i)}`;
    await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: text });
    await vendor.delivered((e) => e.text === text, text);
  }
  let rss = { now: NaN, peak: NaN };
  const rows = await bridge.store
    .knex("bridge_outbound")
    .where({ state: "delivered" })
    .whereRaw("event->>'text' like 'out-%'")
    .select<{ created_at: Date; delivered_at: Date }[]>("created_at", "delivered_at");
  const added = rows.map((r) => new Date(r.delivered_at).getTime() - new Date(r.created_at).getTime());

  process.stderr.write("bench: throughput\n");
  // Throughput: a burst each way into Alice's client.
  const burst = async (label: string, send: (text: string) => Promise<unknown>): Promise<number> => {
    const texts = Array.from({ length: N }, (_, i) => `${label}-${String(i)}`);
    const last = arrival(alice, texts[texts.length - 1] ?? "");
    const t0 = performance.now();
    for (const t of texts) await send(t);
    return N / (((await last) - t0) / 1000);
  };
  const tputDirect = await burst("tput-m", (text) =>
    bob.sendMessage(roomId, { msgtype: MsgType.Text, body: text }),
  );
  const tputBridge = await burst("tput-v", (text) =>
    vendor.send({
      type: "message",
      conversation_id: "bench",
      message_id: randomUUID(),
      sender: "anna",
      text,
    }),
  );

  process.stderr.write("bench: rss\n");
  // 10,000 mapped conversations in the store; then the bridge as its own process (as deployed),
  // carrying a burst over them, and its resident memory.
  await bridge.store.knex.batchInsert(
    "interop_conversations",
    Array.from({ length: 10_000 }, (_, i) => ({
      vendor: vendor.id,
      conversation_id: `mapped-${String(i)}`,
      kind: "direct",
      room_id: `!mapped-${String(i)}:${org.serverName}`,
      created_at: new Date(),
    })),
    1000,
  );
  await bridge.stop();
  const child = spawn(process.execPath, ["bridge/src/main.ts", "--config", org.paths.bridgeConfig], {
    cwd: REPO_ROOT,
    stdio: "ignore",
  });
  try {
    await waitUntil(
      () =>
        fetch(`${org.bridgeUrl}/health`).then(
          (r) => r.ok,
          () => false,
        ),
      "the bridge process answers /health",
      60_000,
    );
    await burst("rss", (text) =>
      vendor.send({
        type: "message",
        conversation_id: "bench",
        message_id: randomUUID(),
        sender: "anna",
        text,
      }),
    );
    const status = readFileSync(`/proc/${String(child.pid)}/status`, "utf8");
    const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN) / 1024;
    rss = { now: kib("VmRSS"), peak: kib("VmHWM") };
  } finally {
    child.kill("SIGTERM");
  }

  console.log(`\nbridge vs Synapse alone, ${String(N)} messages each, encrypted room (npm run bench:bridge)`);
  row("", "Synapse alone", "via bridge");
  row("send → Alice has it, p50 (ms)", q(direct, 0.5).toFixed(1), q(viaBridge, 0.5).toFixed(1));
  row("send → Alice has it, p99 (ms)", q(direct, 0.99).toFixed(1), q(viaBridge, 0.99).toFixed(1));
  row("  ratio p50 (target ≤ 1.2)", "", (q(viaBridge, 0.5) / q(direct, 0.5)).toFixed(2));
  row("Matrix → vendor added after delivery p50 (ms)", "", q(added, 0.5).toFixed(1));
  row("Matrix → vendor added after delivery p99 (ms)", "", q(added, 0.99).toFixed(1));
  row("throughput into Alice's client (msg/s)", tputDirect.toFixed(1), tputBridge.toFixed(1));
  row("  ratio (target ≥ 0.9)", "", (tputBridge / tputDirect).toFixed(2));
  row(
    "bridge process RSS now / peak, 10,000 conversations (MiB)",
    "",
    `${rss.now.toFixed(0)} / ${rss.peak.toFixed(0)}`,
  );
  console.log(`(store: ${postgresUrl ? "PostgreSQL" : "PGlite, embedded in the bridge process"})`);
} finally {
  await net.stop(false);
  await vendor.stop();
}
