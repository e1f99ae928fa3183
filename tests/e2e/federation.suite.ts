import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { sharedRoom, waitForRoomEvent, withSynapseDb, type TestNetwork } from "../harness/index.ts";

const isMessage = (body: string) => (e: { getType(): string; getContent(): { body?: unknown } }) =>
  e.getType() === "m.room.message" && e.getContent().body === body;

/**
 * Two organisations federating, message exchange and an encrypted room: run as is on two
 * single-process organisations (federation.test.ts) and with the first one on Synapse workers
 * (federation-workers.test.ts). What Synapse stored is read from its database, SQLite or PostgreSQL.
 */
export function federationSuite(
  net: () => TestNetwork,
  title = "two organisations federate over TLS with the local CA",
): void {
  describe(title, () => {
    it("exchange messages both ways", async () => {
      const { ac, bc, roomId } = await sharedRoom(net());
      const [a, b] = net().orgs;
      expect(a?.serverName).not.toBe(b?.serverName);

      await ac.sendTextMessage(roomId, "hello from Hospital A");
      const seenByBob = await waitForRoomEvent(bc, roomId, isMessage("hello from Hospital A"), {
        description: "Alice's message on org B",
      });
      expect(seenByBob.getSender()).toBe(ac.getUserId());

      await bc.sendTextMessage(roomId, "hello from GP circle B");
      const seenByAlice = await waitForRoomEvent(ac, roomId, isMessage("hello from GP circle B"), {
        description: "Bob's message on org A",
      });
      expect(seenByAlice.getSender()).toBe(bc.getUserId());
    });

    it("decrypt a message across servers, while both homeservers store only ciphertext", async () => {
      // No encryption asked for: the proxy made the room encrypted from its first event.
      const { ac, bc, roomId } = await sharedRoom(net());
      const secret = `clinical detail ${randomBytes(8).toString("hex")}`;
      const { event_id: eventId } = await ac.sendTextMessage(roomId, secret);

      const decrypted = await waitForRoomEvent(bc, roomId, isMessage(secret), {
        description: "Alice's encrypted message, decrypted by Bob's Rust crypto",
      });
      expect(decrypted.getId()).toBe(eventId);
      expect(decrypted.isEncrypted()).toBe(true);
      expect(decrypted.getWireType()).toBe("m.room.encrypted");

      for (const org of net().orgs) {
        await withSynapseDb(org, async (db) => {
          const [row] = await db.all<{ json: string }>("SELECT json FROM event_json WHERE event_id = ?", [
            eventId,
          ]);
          expect(row, `event ${eventId} stored on ${org.serverName}`).toBeDefined();
          const stored = JSON.parse(row!.json) as {
            type: string;
            content: { algorithm?: string; ciphertext?: string };
          };
          expect(stored.type).toBe("m.room.encrypted");
          expect(stored.content.algorithm).toBe("m.megolm.v1.aes-sha2");
          expect(stored.content.ciphertext?.length).toBeGreaterThan(0);
          const rows = await db.all<{ json: string }>("SELECT json FROM event_json WHERE room_id = ?", [
            roomId,
          ]);
          expect(rows.length).toBeGreaterThan(3);
          expect(rows.filter((r) => r.json.includes(secret))).toEqual([]);
        });
        // Not in any page of an SQLite database's files either (main file and write-ahead log).
        if (org.org.database.type !== "sqlite") continue;
        for (const file of [org.paths.sqliteDb, `${org.paths.sqliteDb}-wal`]) {
          if (existsSync(file))
            expect(readFileSync(file).includes(secret), `${file} contains the plaintext`).toBe(false);
        }
      }
    });
  });
}
