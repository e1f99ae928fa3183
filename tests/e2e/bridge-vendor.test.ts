import { createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { MsgType, type MatrixClient } from "matrix-js-sdk";
import { describe, expect, it } from "vitest";
import { startReferenceVendor } from "../../bridge/src/vendor/index.ts";
import {
  freePorts,
  nextRoom,
  useTestNetwork,
  waitForRoomEvent,
  waitUntil,
  type TestUser,
} from "../harness/index.ts";

// The reference messenger (bridge/src/vendor) against the real bridge: a conversation both ways,
// then the vendor down for minutes and Synapse restarted, with nothing lost.
const OUTAGE_MS = Number(process.env.MEDMESH_VENDOR_OUTAGE_MS ?? 180_000);
const keys = generateKeyPairSync("ed25519");
const [vendorPort] = (await freePorts(1)) as [number];
const net = useTestNetwork({
  name: "bridge-vendor",
  organisations: 1,
  organisationSettings: {
    0: {
      bridge_vendors: [
        {
          id: "refmsg",
          key_id: "refmsg-1",
          public_key: keys.publicKey.export({ format: "jwk" }),
          webhook_url: `http://127.0.0.1:${String(vendorPort)}/webhook`,
        },
      ],
    },
  },
});
const org = () => net().orgs[0]!;

type Vendor = Awaited<ReturnType<typeof startReferenceVendor>>;
const startVendor = (): Promise<Vendor> =>
  startReferenceVendor({
    dataFile: join(net().dataDir, "vendor.sqlite"),
    listen: { host: "127.0.0.1", port: vendorPort },
    vendorId: "refmsg",
    keyId: "refmsg-1",
    privateKey: keys.privateKey,
    medmesh: {
      url: org().bridgeInteropUrl,
      keyId: `medmesh-${org().org.id}`,
      publicKey: createPublicKey(createPrivateKey(readFileSync(org().paths.bridgeSigningKey))).export({
        format: "jwk",
      }),
    },
  });

describe("bridge with the reference messenger", () => {
  let vendor: Vendor;
  let alice: TestUser;
  let client: MatrixClient;
  let roomId: string;
  let conversation: string;
  const api = async <T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<T> => {
    const res = await fetch(`${vendor.url}/api${path}`, {
      method,
      headers: { "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await res.json()) as T;
    if (!res.ok)
      throw new Error(`vendor API ${method} ${path}: ${String(res.status)} ${JSON.stringify(json)}`);
    return json;
  };
  const vendorTexts = async (direction: "in" | "out") =>
    (
      await api<{ events: { direction: string; event: { type: string; text?: string } }[] }>(
        "GET",
        `/conversations/${encodeURIComponent(conversation)}/events`,
      )
    ).events
      .filter((e) => e.direction === direction && e.event.type === "message")
      .map((e) => e.event.text ?? "");

  it("a vendor user and a Matrix user talk both ways", async () => {
    vendor = await startVendor();
    alice = await net().registerUser(org(), "alice");
    client = await net().client(alice);
    await api("POST", "/users", { id: "anna", display_name: "Anna Smit" });
    const invited = nextRoom(client);
    ({ conversation_id: conversation } = await api<{ conversation_id: string }>("POST", "/conversations", {
      kind: "direct",
      creator: "anna",
      members: ["anna", alice.userId],
    }));
    roomId = await invited;
    await client.joinRoom(roomId);
    await api("POST", `/conversations/${encodeURIComponent(conversation)}/messages`, {
      sender: "anna",
      text: "Good morning from the reference messenger",
    });
    const hello = await waitForRoomEvent(
      client,
      roomId,
      (e) => e.getContent().body === "Good morning from the reference messenger",
      {
        description: "Anna's message",
      },
    );
    expect(hello.getSender()).toBe(`@bridge_refmsg_anna:${org().serverName}`);
    expect(client.getRoom(roomId)?.getMember(hello.getSender()!)?.name).toBe("Anna Smit");
    await client.sendMessage(roomId, { msgtype: MsgType.Text, body: "Morning Anna" });
    await waitUntil(
      async () => (await vendorTexts("in")).includes("Morning Anna"),
      "Alice's answer at the vendor",
    );
  });

  it(
    `keeps Matrix users' messages while the vendor is down (${String(OUTAGE_MS / 1000)} s), then delivers all, in order`,
    async () => {
      await vendor.stop();
      const texts = Array.from({ length: 12 }, (_, i) => `during outage ${String(i + 1)}`);
      for (const text of texts) {
        await client.sendMessage(roomId, { msgtype: MsgType.Text, body: text });
        await new Promise((r) => setTimeout(r, OUTAGE_MS / texts.length));
      }
      vendor = await startVendor();
      await waitUntil(
        async () =>
          (await vendorTexts("in")).filter((t) => t.startsWith("during outage")).length >= texts.length,
        "every message of the outage at the vendor",
        120_000,
      );
      expect((await vendorTexts("in")).filter((t) => t.startsWith("during outage"))).toEqual(texts);
      const undelivered = client
        .getRoom(roomId)
        ?.getLiveTimeline()
        .getEvents()
        .filter((e) => String(e.getContent().body).startsWith("⚠ Not delivered"));
      expect(undelivered).toEqual([]);
    },
    OUTAGE_MS + 240_000,
  );

  it("survives a Synapse restart in both directions", async () => {
    const restarting = org().synapse.restart();
    await api("POST", `/conversations/${encodeURIComponent(conversation)}/messages`, {
      sender: "anna",
      text: "sent while Synapse restarts",
    });
    await restarting;
    await waitForRoomEvent(client, roomId, (e) => e.getContent().body === "sent while Synapse restarts", {
      description: "the vendor's message after the restart",
      timeoutMs: 90_000,
    });
    await client.sendMessage(roomId, { msgtype: MsgType.Text, body: "after the restart" });
    await waitUntil(
      async () => (await vendorTexts("in")).includes("after the restart"),
      "Alice's message at the vendor",
      60_000,
    );
    await vendor.stop();
  });
});
