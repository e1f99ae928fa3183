import { randomBytes } from "node:crypto";
import { Agent, fetch as undiciFetch } from "undici";
import { describe, expect, it } from "vitest";
import { everyPathKit, type Answer } from "../harness/every-path.ts";
import { useTestNetwork, waitUntil, postgresForSuite } from "../harness/index.ts";

// The local runner with `policy_module_replicas: 2` (docs/replicas.md, deploy/src/service-replicas.ts):
// both replicas on ports of their own behind a balancer on each configured port, so clients (the
// client proxy), Synapse's module decisions and its appservice transactions have one address each.
// When the first replica stops, the other answers all three at the same addresses — and the rules
// still hold there.
const postgresUrl = postgresForSuite("replicas behind the balancer");
const MEGOLM = "m.megolm.v1.aes-sha2";

if (postgresUrl) {
  describe("replicas behind the balancer", () => {
    const net = useTestNetwork({
      name: "replicas-balancer",
      organisations: 1,
      postgresUrl,
      organisationSettings: { 0: { policy_module_replicas: 2 } },
    });
    const { org, user, roomsNamed, expectRefused } = everyPathKit(net);
    const balancer = (i: number) => org(0).policyModuleBalancers?.[i];
    const counts = (i: number): number[] => [...(balancer(i)?.connections.values() ?? [])];

    /** createRoom through the client port, each on a connection of its own. */
    const createRoom = async (name: string, algorithm: string): Promise<Answer> => {
      const anna = await user(0, "anna");
      const dispatcher = new Agent({ pipelining: 0 });
      try {
        const res = await undiciFetch(`${org(0).clientUrl}/_matrix/client/v3/createRoom`, {
          method: "POST",
          headers: { authorization: `Bearer ${anna.accessToken}`, "content-type": "application/json" },
          body: JSON.stringify({
            name,
            initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm } }],
          }),
          dispatcher,
        });
        return { status: res.status, body: (await res.json()) as Record<string, unknown> };
      } finally {
        await dispatcher.close();
      }
    };
    const indexed = async (eventId: string): Promise<boolean> => {
      const store = org(0).policyModuleReplicas?.[0]?.store;
      if (!store) throw new Error("no second replica");
      return (await store.knex("retention_events").where({ event_id: eventId }).first()) !== undefined;
    };
    const send = async (roomId: string, body: string): Promise<string> => {
      const anna = await user(0, "anna");
      const res = await fetch(
        `${org(0).clientUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${randomBytes(6).toString("hex")}`,
        {
          method: "PUT",
          headers: { authorization: `Bearer ${anna.accessToken}`, "content-type": "application/json" },
          body: JSON.stringify({ msgtype: "m.text", body }),
        },
      );
      expect(res.status).toBe(200);
      return ((await res.json()) as { event_id: string }).event_id;
    };

    it("one address per listener: client connections go to both replicas in turn", async () => {
      // Internal API (Synapse's module and appservice), client proxy, federation proxy.
      expect(org(0).policyModuleBalancers).toHaveLength(3);
      expect(org(0).policyModuleReplicas).toHaveLength(1);
      const before = counts(1);
      const answers = await Promise.all(
        Array.from({ length: 4 }, (_, i) =>
          createRoom(`lb-${String(i)}-${randomBytes(3).toString("hex")}`, MEGOLM),
        ),
      );
      for (const a of answers) expect(a.status, JSON.stringify(a.body)).toBe(200);
      const after = counts(1);
      // Round robin: each replica took (at least) one of the four new connections.
      expect(after.map((n, i) => n - (before[i] ?? 0)).every((d) => d >= 1)).toBe(true);
      // Synapse asked the module about each room through the internal balancer.
      expect(counts(0).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    });

    it("the first replica stops: the other answers clients, decisions and transactions at the same addresses, and still refuses", async () => {
      await org(0).services[0]!.stop();
      const clientBefore = counts(1);
      const name = `after-${randomBytes(4).toString("hex")}`;
      // A decision (Synapse's module asks before the room exists) answered by the second replica.
      const ok = await createRoom(name, MEGOLM);
      expect(ok.status, JSON.stringify(ok.body)).toBe(200);
      // The rule holds on the replica that is left: nothing stored.
      expectRefused(
        await createRoom(`${name}-plain`, "m.none.plaintext"),
        /end-to-end encrypted with m\.megolm/,
      );
      expect(await roomsNamed(0, `${name}-plain`)).toBe(0);
      // Only the live replica took the new client connections.
      const clientAfter = counts(1);
      expect(clientAfter[0]).toBe(clientBefore[0]);
      expect((clientAfter[1] ?? 0) - (clientBefore[1] ?? 0)).toBeGreaterThanOrEqual(2);
      // Synapse's appservice transaction with the message reached the second replica: indexed
      // for retention in the shared store.
      const eventId = await send(String(ok.body.room_id), "after the first replica stopped");
      await waitUntil(
        async () => ((await indexed(eventId)) ? true : undefined),
        "the message in the retention index",
        60_000,
      );
    });
  });
}
