import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";
import { describe, expect, it } from "vitest";
import { sharedRoom, useTestNetwork, waitForRoomEvent } from "../harness/index.ts";

const net = useTestNetwork({ name: "federation" });

const isMessage = (body: string) => (e: { getType(): string; getContent(): { body?: unknown } }) =>
  e.getType() === "m.room.message" && e.getContent().body === body;

describe("two organisations federate over TLS with the local CA", () => {
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
      const db = new DatabaseSync(org.paths.sqliteDb, { readOnly: true });
      try {
        const row = db.prepare("SELECT json FROM event_json WHERE event_id = ?").get(eventId) as
          { json: string } | undefined;
        expect(row, `event ${eventId} stored on ${org.serverName}`).toBeDefined();
        const stored = JSON.parse(row!.json) as {
          type: string;
          content: { algorithm?: string; ciphertext?: string };
        };
        expect(stored.type).toBe("m.room.encrypted");
        expect(stored.content.algorithm).toBe("m.megolm.v1.aes-sha2");
        expect(stored.content.ciphertext?.length).toBeGreaterThan(0);
        const rows = db.prepare("SELECT json FROM event_json WHERE room_id = ?").all(roomId) as {
          json: string;
        }[];
        expect(rows.length).toBeGreaterThan(3);
        expect(rows.filter((r) => r.json.includes(secret))).toEqual([]);
      } finally {
        db.close();
      }
      // Not in any page of the database files either (main file and write-ahead log).
      for (const file of [org.paths.sqliteDb, `${org.paths.sqliteDb}-wal`]) {
        if (existsSync(file))
          expect(readFileSync(file).includes(secret), `${file} contains the plaintext`).toBe(false);
      }
    }
  });
});
