import { MsgType, type MatrixClient } from "matrix-js-sdk";
import { afterAll, describe, expect, it } from "vitest";
import { TestVendor } from "../harness/interop-vendor.ts";
import {
  adminApi,
  roomBodies,
  useTestNetwork,
  waitForRoomEvent,
  waitUntil,
  type TestUser,
} from "../harness/index.ts";
import { answers, killRepeatedly, serviceProcess } from "../harness/service-process.ts";

// Crash safety of the bridge: it runs as its own process here, so it can be killed with SIGKILL
// in the middle of a burst and started again, as a supervisor (systemd, compose) would.
const BURST = Number(process.env.MEDMESH_CRASH_BURST ?? 1000);
const KILLS = Number(process.env.MEDMESH_CRASH_KILLS ?? 20);

const vendor = new TestVendor();
await vendor.start();
afterAll(() => vendor.stop());

const postgresUrl = process.env.MEDMESH_TEST_POSTGRES_URL;
const net = useTestNetwork({
  name: "bridge-crash",
  organisations: 1,
  ...(postgresUrl ? { postgresUrl } : {}),
  organisationSettings: {
    0: { bridge_vendors: [vendor.setting] },
  },
});
const org = () => net().orgs[0]!;

const bridge = serviceProcess({
  service: "bridge",
  config: () => org().paths.bridgeConfig,
  dataDir: () => net().dataDir,
  ready: () => answers(`${org().bridgeUrl}/health`),
});
const startBridge = bridge.start;
const kill = bridge.kill;
afterAll(kill);

describe(`bridge crash safety: kill -9 ×${String(KILLS)} during ${String(BURST)}-message bursts`, () => {
  let alice: TestUser;
  let client: MatrixClient;
  let roomId: string;

  it("sets up a portal with the bridge as its own process", async () => {
    await org()
      .services.find((s) => s.name === "bridge")
      ?.stop();
    await startBridge();
    vendor.connect(org().bridgeInteropUrl, org().paths.bridgeSigningKey);
    alice = await net().registerUser(org(), "alice");
    client = await net().client(alice);
    roomId = await vendor.openConversation(
      { conversation_id: "burst", kind: "direct", creator: "anna", members: ["anna", alice.userId] },
      client,
    );
    await vendor.send({
      type: "message",
      conversation_id: "burst",
      message_id: "hello",
      sender: "anna",
      text: "hello",
    });
    await waitForRoomEvent(client, roomId, (e) => e.getContent().body === "hello", {
      description: "Anna's first message",
    });
  });

  it("looks for held-back Synapse transactions only after a recovery", async () => {
    const catchUps = async () => {
      const metrics = await adminApi(org(), "bridge").metrics();
      return [...metrics.matchAll(/^medmesh_appservice_catch_ups_total\{[^}]*\} (\d+)/gm)].reduce(
        (n, m) => n + Number(m[1]),
        0,
      );
    };
    const say = (text: string) => client.sendMessage(roomId, { msgtype: MsgType.Text, body: text });
    await say("r1");
    await vendor.delivered((e) => e.text === "r1", "r1 at the vendor");
    expect(await catchUps(), "after a start with nothing stored at Synapse").toBe(0);
    await kill();
    await say("r2"); // Synapse stores it, and sends it again once the bridge is back
    await startBridge();
    await say("r3");
    // r3 (and r4) may be created while Synapse finishes the recovery, and then held back until its
    // next failure (CI saw both): the room's next transaction brings the frame's catch-up for them
    // (docs/appservice-frame.md). So the room goes on talking until r4 is through.
    await say("r4");
    let nudges = 0;
    await waitUntil(
      async () => {
        if (vendor.texts(/^r4$/).length > 0) return true;
        await say(`nudge ${String(++nudges)}`);
        await new Promise((r) => setTimeout(r, 5000));
        return undefined;
      },
      "r4 at the vendor",
      120_000,
    );
    await vendor.delivered((e) => e.text === "r3", "r3 at the vendor");
    expect(vendor.texts(/^r\d$/)).toEqual(["r1", "r2", "r3", "r4"]);
    expect(await catchUps(), "after Synapse recovered the transaction it stored").toBeGreaterThan(0);
  });

  it("vendor → Matrix: every message arrives once, in order", async () => {
    const texts = Array.from({ length: BURST }, (_, i) => `v${String(i + 1).padStart(4, "0")}`);
    const sending = vendor.sendTexts("burst", "anna", texts, 20);
    await killRepeatedly(KILLS, { kill, start: startBridge });
    const retries = await sending;
    await waitForRoomEvent(client, roomId, (e) => e.getContent().body === texts.at(-1), {
      description: `the last of ${String(BURST)} vendor messages`,
      timeoutMs: 180_000,
    });
    const bodies = (await roomBodies(client, roomId)).filter((b) => /^v\d{4}$/.test(b));
    expect(bodies.length, "each message exactly once").toBe(BURST);
    expect(bodies, "in the order sent").toEqual(texts);
    process.stdout.write(
      `vendor → Matrix: ${String(BURST)} messages, ${String(KILLS)} kills, ${String(retries)} vendor retries\n`,
    );
  }, 400_000);

  it("Matrix → vendor: every message arrives once, in order", async () => {
    const texts = Array.from({ length: BURST }, (_, i) => `m${String(i + 1).padStart(4, "0")}`);
    const sending = (async () => {
      for (const text of texts) await client.sendMessage(roomId, { msgtype: MsgType.Text, body: text });
    })();
    await killRepeatedly(KILLS, { kill, start: startBridge });
    await sending;
    await vendor.delivered(
      (e) => e.text === texts.at(-1),
      `the last of ${String(BURST)} Matrix messages at the vendor`,
      240_000,
    );
    const arrived = vendor.texts(/^m\d{4}$/);
    expect(arrived.length, "each message exactly once").toBe(BURST);
    expect(arrived, "in the order sent").toEqual(texts);
    const undelivered = (await roomBodies(client, roomId)).filter((b) => b.startsWith("⚠ Not delivered"));
    expect(undelivered).toEqual([]);
    process.stdout.write(
      `Matrix → vendor: ${String(BURST)} messages, ${String(KILLS)} kills, ${String(vendor.duplicates)} repeated deliveries absorbed by the webhook\n`,
    );
  }, 400_000);
});
