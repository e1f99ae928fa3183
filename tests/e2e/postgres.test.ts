import knexFactory from "knex";
import { describe, expect, it } from "vitest";
import { sharedRoom, useTestNetwork, waitForRoomEvent, postgresForSuite } from "../harness/index.ts";

const postgresUrl = postgresForSuite("organisations on PostgreSQL");

if (postgresUrl) {
  describe("organisations on PostgreSQL (Synapse and the MedMesh stores)", () => {
    const net = useTestNetwork({ name: "postgres", postgresUrl });

    it("federate, with events in Synapse's Postgres database and service state in the store's", async () => {
      const { ac, bc, roomId } = await sharedRoom(net());
      const { event_id: eventId } = await ac.sendTextMessage(roomId, "stored in PostgreSQL");
      await waitForRoomEvent(bc, roomId, (e) => e.getId() === eventId, {
        description: "Alice's message on org B",
      });

      for (const org of net().orgs) {
        const hs = org.org.database;
        if (hs.type !== "postgres") throw new Error("expected a Postgres-backed Synapse");
        const db = knexFactory({
          client: "pg",
          connection: { host: hs.host, port: hs.port, user: hs.user, database: hs.database },
          pool: { min: 0, max: 1 },
        });
        try {
          const row = await db("events")
            .where({ event_id: eventId })
            .first<{ room_id: string } | undefined>("room_id");
          expect(row?.room_id, `event in ${hs.database}`).toBe(roomId);
        } finally {
          await db.destroy();
        }
        for (const svc of org.services) {
          expect(svc.store).toBeDefined();
          const health = (await (await fetch(`${svc.url}/health`)).json()) as { checks: { store: string } };
          expect(health.checks.store).toBe("ok");
        }
        // The services' store is the configured Postgres database, migrated.
        if (org.org.store.type !== "postgres") throw new Error("expected a Postgres store");
        const store = knexFactory({ client: "pg", connection: org.org.store.url, pool: { min: 0, max: 1 } });
        try {
          expect(await store.schema.hasTable("appservice_transactions")).toBe(true);
        } finally {
          await store.destroy();
        }
      }
    });
  });
}
