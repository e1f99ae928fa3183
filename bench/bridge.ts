/**
 * The bridge beside Synapse alone, in one run on one network (real Synapse, encrypted rooms):
 *   npm run bench:bridge        (BENCH_MESSAGES=200 to change the load)
 *
 * - vendor → Matrix latency: a vendor message until Alice's client has it decrypted, against a
 *   Matrix user's message in the same room (Synapse alone), interleaved;
 * - Matrix → vendor added latency: from the moment Synapse delivered the transaction to the bridge
 *   (the bridge's record) until the vendor's webhook has the event (the vendor's; one host, one
 *   clock), in steady state and in the minute after a recovery (the bridge was down, Synapse
 *   retries what it stored, and the bridge checks each portal for transactions Synapse may hold
 *   back, docs/bridge.md);
 * - throughput: a burst of messages until Alice has them all, vendor via the bridge vs. a Matrix
 *   user via Synapse alone;
 * - the bridge process's resident memory with 10,000 mapped conversations in its store
 *   (MEDMESH_TEST_POSTGRES_URL set: stores on PostgreSQL, as in production).
 *
 * The policy module and the bridge run as their own processes, as deployed (docker-compose.yml's
 * commands, the image's NODE_OPTIONS), so the clients, the vendor and the rest of the network in
 * this process do not share their event loops.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { loadConfigFile } from "@medmesh/common";
import { createKnex } from "@medmesh/common/store";
import { REPO_ROOT } from "@medmesh/deploy";
import { BridgeConfigSchema } from "../bridge/src/config.ts";
import { MsgType, RoomEvent, MatrixEventEvent, type MatrixClient, type MatrixEvent } from "matrix-js-sdk";
import { TestVendor } from "../tests/harness/interop-vendor.ts";
import { startTestNetwork, waitUntil } from "../tests/harness/index.ts";

const N = Number(process.env.BENCH_MESSAGES ?? 200);
/** Matrix → vendor messages sent in the minute after a recovery (the bridge's catch-up window). */
const N_RECOVERY = Math.min(N, 40);
/** How long after a recovery the frame checks every transaction for held-back ones (common/src/appservice/catch-up.ts). */
const CATCH_UP_WINDOW_MS = 60_000;
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
  console.log(`${label.padEnd(52)}${a.padStart(16)}${b.padStart(16)}`);
};

/** The Node options the services' image runs them with (deploy/docker/Dockerfile): the bench too. */
function deployedNodeOptions(): string {
  const dockerfile = readFileSync(join(REPO_ROOT, "deploy/docker/Dockerfile"), "utf8");
  const options = /^ENV NODE_OPTIONS="([^"]*)"/m.exec(dockerfile)?.[1];
  if (options === undefined) throw new Error("deploy/docker/Dockerfile sets no NODE_OPTIONS");
  return options;
}

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

const children: ChildProcess[] = [];
try {
  const org = net.orgs[0];
  if (!org) throw new Error("no organisation");
  const bridge = org.services.find((s) => s.name === "bridge");
  const policyModule = org.services.find((s) => s.name === "policy-module");
  if (!bridge || !policyModule) throw new Error("no bridge or policy module");
  // 10,000 mapped conversations in the store; then the policy module (the bridge's way into
  // Matrix) and the bridge each as their own process, as deployed.
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
  const own = async (service: typeof bridge, main: string, config: string) => {
    const child = spawn(process.execPath, [main, "--config", config], {
      cwd: REPO_ROOT,
      stdio: "ignore",
      env: { ...process.env, NODE_OPTIONS: deployedNodeOptions() },
    });
    children.push(child);
    await waitUntil(
      () =>
        fetch(`${service.url}/health`).then(
          (r) => r.ok,
          () => false,
        ),
      `${service.name} answers /health as its own process`,
      60_000,
    );
    return child;
  };
  await policyModule.stop();
  await bridge.stop();
  await own(policyModule, "policy-module/src/main.ts", org.paths.policyModuleConfig);
  let bridgeProcess = await own(bridge, "bridge/src/main.ts", org.paths.bridgeConfig);
  const stopBridge = async () => {
    bridgeProcess.kill("SIGTERM");
    await once(bridgeProcess, "exit");
  };
  let rss = { now: NaN, peak: NaN };
  try {
    vendor.connect(org.bridgeInteropUrl, org.paths.bridgeSigningKey);
    const alice = await net.client(await net.registerUser(org, "alice"));
    const bobUser = await net.registerUser(org, "bob");
    const bob = await net.client(bobUser);
    const roomId = await vendor.openConversation(
      {
        conversation_id: "bench",
        kind: "group",
        creator: "anna",
        members: ["anna", alice.getUserId() ?? "", bobUser.userId],
      },
      alice,
      bob,
    );
    const fromVendor = (text: string) =>
      vendor.send({
        type: "message",
        conversation_id: "bench",
        message_id: randomUUID(),
        sender: "anna",
        text,
      });
    await fromVendor("warm-up");
    await arrival(alice, "warm-up");
    await bob.sendMessage(roomId, { msgtype: MsgType.Text, body: "warm-up 2" });
    await arrival(alice, "warm-up 2");
    /** Matrix → vendor: Alice's messages, one at a time until the vendor has each. */
    const toVendor = async (label: string, n: number) => {
      for (let i = 0; i < n; i++) {
        const text = `${label}-${String(i)}`;
        await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: text });
        await vendor.delivered((e) => e.text === text, text);
      }
    };

    process.stderr.write("bench: latency\n");
    // Latency, interleaved: vendor via the bridge, and Bob via Synapse alone.
    const viaBridge: number[] = [];
    const direct: number[] = [];
    for (let i = 0; i < N; i++) {
      let text = `lat-v-${String(i)}`;
      let seen = arrival(alice, text);
      let t0 = performance.now();
      await fromVendor(text);
      viaBridge.push((await seen) - t0);
      text = `lat-m-${String(i)}`;
      seen = arrival(alice, text);
      t0 = performance.now();
      await bob.sendMessage(roomId, { msgtype: MsgType.Text, body: text });
      direct.push((await seen) - t0);
    }

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
    const tputBridge = await burst("tput-v", fromVendor);

    process.stderr.write("bench: matrix-to-vendor\n");
    await toVendor("out-steady", N);
    const status = readFileSync(`/proc/${String(bridgeProcess.pid)}/status`, "utf8");
    const kib = (field: string) => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? NaN) / 1024;
    rss = { now: kib("VmRSS"), peak: kib("VmHWM") };

    process.stderr.write("bench: matrix-to-vendor after a recovery\n");
    // The bridge stops, Alice writes meanwhile: Synapse stores the transaction and retries it once
    // the bridge is back, and the bridge checks each portal for held-back transactions for a minute.
    await stopBridge();
    await alice.sendMessage(roomId, { msgtype: MsgType.Text, body: "while-down" });
    const restartedAt = performance.now();
    bridgeProcess = await own(bridge, "bridge/src/main.ts", org.paths.bridgeConfig);
    await vendor.delivered((e) => e.text === "while-down", "the message sent while the bridge was down");
    await toVendor("out-recovery", N_RECOVERY);
    const inWindow = performance.now() - restartedAt < CATCH_UP_WINDOW_MS;

    // The bridge's records: when Synapse delivered each transaction, and when it had the vendor's
    // answer; the vendor's: when its webhook had the event.
    await stopBridge();
    const store = await createKnex(loadConfigFile(BridgeConfigSchema, org.paths.bridgeConfig).store);
    const vendorHad = new Map(vendor.received.map((r) => [r.key, r.at]));
    const added = async (label: string) => {
      // Delivered rows no longer hold their text: the vendor's copy says which keys they were.
      const keys = vendor.received
        .filter((r) => typeof r.event.text === "string" && r.event.text.startsWith(`${label}-`))
        .map((r) => r.key);
      const rows = await store("bridge_outbound")
        .where({ state: "delivered" })
        .whereIn("idempotency_key", keys)
        .select<{ idempotency_key: string; created_at: Date; delivered_at: Date }[]>(
          "idempotency_key",
          "created_at",
          "delivered_at",
        );
      const from = (r: (typeof rows)[number]) => new Date(r.created_at).getTime();
      return {
        webhook: rows.map((r) => (vendorHad.get(r.idempotency_key) ?? NaN) - from(r)),
        answered: rows.map((r) => new Date(r.delivered_at).getTime() - from(r)),
      };
    };
    const steady = await added("out-steady");
    const recovery = await added("out-recovery");
    await store.destroy();

    console.log(
      `\nbridge vs Synapse alone, ${String(N)} messages each, encrypted room (npm run bench:bridge)`,
    );
    row("", "Synapse alone", "via bridge");
    row("send → Alice has it, p50 (ms)", q(direct, 0.5).toFixed(1), q(viaBridge, 0.5).toFixed(1));
    row("send → Alice has it, p99 (ms)", q(direct, 0.99).toFixed(1), q(viaBridge, 0.99).toFixed(1));
    row("  ratio p50 (target ≤ 1.2)", "", (q(viaBridge, 0.5) / q(direct, 0.5)).toFixed(2));
    const pp = (xs: number[]) => `${q(xs, 0.5).toFixed(1)} / ${q(xs, 0.99).toFixed(1)}`;
    row("Matrix → vendor added, until the webhook has it, p50 / p99 (ms)", "", pp(steady.webhook));
    row("  … until the bridge has the vendor's answer", "", pp(steady.answered));
    row(`  after a recovery (${String(N_RECOVERY)} msgs, catch-up on), p50 / p99`, "", pp(recovery.webhook));
    if (!inWindow) console.log("  (the recovery sample ran past the catch-up minute: slow machine)");
    row("throughput into Alice's client (msg/s)", tputDirect.toFixed(1), tputBridge.toFixed(1));
    row("  ratio (target ≥ 0.9)", "", (tputBridge / tputDirect).toFixed(2));
    row(
      "bridge process RSS now / peak, 10,000 conversations (MiB)",
      "",
      `${rss.now.toFixed(0)} / ${rss.peak.toFixed(0)}`,
    );
    console.log(`(store: ${postgresUrl ? "PostgreSQL" : "PGlite, embedded in the bridge process"})`);
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
  }
} finally {
  await net.stop(false);
  await vendor.stop();
}
