import { MsgType, type MatrixClient } from "matrix-js-sdk";
import { describe, expect, it } from "vitest";
import { referenceVendor } from "../harness/reference-vendor.ts";
import { useTestNetwork, waitForRoomEvent, waitUntil } from "../harness/index.ts";

// The reference messenger (bridge/src/vendor) against the real bridge: a conversation both ways,
// then the vendor down for minutes and Synapse restarted, with nothing lost.
const OUTAGE_MS = Number(process.env.MEDMESH_VENDOR_OUTAGE_MS ?? 180_000);
const vendor = await referenceVendor(() => ({ dataDir: net().dataDir, org: org() }));
const net = useTestNetwork({
  name: "bridge-vendor",
  organisations: 1,
  organisationSettings: { 0: { bridge_vendors: [vendor.settings] } },
});
const org = () => net().orgs[0]!;

describe("bridge with the reference messenger", () => {
  let client: MatrixClient;
  let roomId: string;
  let conversation: string;
  const api = vendor.api;
  const vendorTexts = (direction: "in" | "out") => vendor.texts(conversation, direction);

  it("a vendor user and a Matrix user talk both ways", async () => {
    await vendor.start();
    const alice = await net().registerUser(org(), "alice");
    client = await net().client(alice);
    ({ conversation, roomId } = await vendor.directWithAnna(client));
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
      await vendor.start();
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
