import { hostname } from "node:os";
import { MsgType, type MatrixClient } from "matrix-js-sdk";
import { describe, expect, it } from "vitest";
import { postgresForSuite, useTestNetwork, waitForRoomEvent, waitUntil } from "../harness/index.ts";
import { referenceVendor } from "../harness/reference-vendor.ts";

// The local runner with `bridge_replicas: 2` (docs/replicas.md, deploy/src/service-replicas.ts):
// two bridges on ports of their own behind a balancer on the bridge's internal port (Synapse's
// appservice transactions) and on its interop port (the vendor's calls). A conversation with the
// reference messenger goes both ways; when the first bridge stops, it goes on at the same
// addresses, each message once.
const postgresUrl = postgresForSuite("bridge replicas behind the balancer");

if (postgresUrl) {
  const vendor = await referenceVendor(() => ({ dataDir: net().dataDir, org: org() }));
  const net = useTestNetwork({
    name: "replicas-bridge-balancer",
    organisations: 1,
    postgresUrl,
    organisationSettings: { 0: { bridge_replicas: 2, bridge_vendors: [vendor.settings] } },
  });
  const org = () => net().orgs[0]!;
  describe("bridge replicas behind the balancer", () => {
    let client: MatrixClient;
    let roomId: string;
    let conversation: string;
    const api = vendor.api;
    const atVendor = () => vendor.texts(conversation, "in");
    const inMatrix = (text: string) =>
      client
        .getRoom(roomId)
        ?.getLiveTimeline()
        .getEvents()
        .filter((e) => e.getContent().body === text).length ?? 0;
    /** One message each way; each arrives once. */
    const talk = async (tag: string) => {
      const from = `Anna ${tag}`;
      await api("POST", `/conversations/${encodeURIComponent(conversation)}/messages`, {
        sender: "anna",
        text: from,
      });
      await waitForRoomEvent(client, roomId, (e) => e.getContent().body === from, { description: from });
      const reply = `Alice ${tag}`;
      await client.sendMessage(roomId, { msgtype: MsgType.Text, body: reply });
      await waitUntil(async () => (await atVendor()).includes(reply), `${reply} at the vendor`, 60_000);
      // Settled: a second delivery of either would have arrived by now.
      await new Promise((r) => setTimeout(r, 2000));
      expect(inMatrix(from)).toBe(1);
      expect((await atVendor()).filter((t) => t === reply)).toEqual([reply]);
    };

    it("two bridges behind one address per listener: a conversation both ways", async () => {
      expect(org().bridgeBalancers).toHaveLength(2);
      expect(org().bridgeReplicas).toHaveLength(1);
      // Against the configured interop port: the balancer.
      await vendor.start();
      const alice = await net().registerUser(org(), "alice");
      client = await net().client(alice);
      ({ conversation, roomId } = await vendor.directWithAnna(client));
      await talk("before");
    });

    it("the first bridge stops: the other carries the conversation at the same addresses, each message once", async () => {
      await org()
        .services.find((s) => s.name === "bridge")
        ?.stop();
      await talk("after the first bridge stopped");
      // The bridge that is left leads the vendor now (its holder: host and internal port).
      const second = [...(org().bridgeBalancers?.[0]?.connections.keys() ?? [])][1]?.split(":")[1];
      const lease = await org()
        .bridgeReplicas?.[0]?.store.knex("leases")
        .where({ name: "bridge:refmsg" })
        .andWhere("expires_at", ">", new Date())
        .first<{ holder: string } | undefined>("holder");
      expect(lease?.holder).toBe(`${hostname()}:${String(second)}`);
      await vendor.stop();
    });
  });
}
