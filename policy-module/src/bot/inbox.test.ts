import { describe, expect, it } from "vitest";
import type { DocumentStore } from "@medmesh/common";
import { createBotInbox, type RawEvent } from "./inbox.ts";
import { needsSnapshotBefore } from "./device-state.ts";

function memoryDocuments(): DocumentStore & { data: Map<string, string> } {
  const data = new Map<string, string>();
  return {
    data,
    get: (name) => Promise.resolve(data.get(name)),
    put: (name, value) => {
      data.set(name, value);
      return Promise.resolve();
    },
  };
}

const ev = (id: string): RawEvent => ({ event_id: id, room_id: "!dm:a", type: "m.room.encrypted" });

describe("the bot's inbox", () => {
  it("keeps events in order until handled, durably, and does not take a handled event again", async () => {
    const docs = memoryDocuments();
    const inbox = createBotInbox(docs, "@bot:a");
    expect(await inbox.add([ev("$1"), ev("$2")], 1000)).toBe(2);
    expect(await inbox.add([ev("$2"), ev("$3")])).toBe(1); // a resent transaction
    // Another process (a restart) reads the same document.
    const again = createBotInbox(docs, "@bot:a");
    expect((await again.next())?.event.event_id).toBe("$1");
    expect((await again.next())?.received_at).toBe(1000);
    await again.done("$1");
    expect((await again.next())?.event.event_id).toBe("$2");
    expect(await again.add([ev("$1")])).toBe(0);
    await again.done("$2");
    await again.done("$3");
    expect(await again.next()).toBeUndefined();
  });

  it("remembers only the most recent handled events", async () => {
    const inbox = createBotInbox(memoryDocuments(), "@bot:a", 2);
    for (const id of ["$1", "$2", "$3"]) {
      await inbox.add([ev(id)]);
      await inbox.done(id);
    }
    expect(await inbox.add([ev("$1"), ev("$3")])).toBe(1);
  });
});

describe("what the crypto store is snapshotted before", () => {
  const at = (path: string) => new URL(`https://hs.example${path}`);
  it("acknowledging to-device messages, publishing keys, sending", () => {
    expect(needsSnapshotBefore("GET", at("/_matrix/client/v3/sync?since=s1&timeout=30000"))).toBe(true);
    expect(needsSnapshotBefore("GET", at("/_matrix/client/v3/sync?timeout=0"))).toBe(false);
    expect(needsSnapshotBefore("POST", at("/_matrix/client/v3/keys/upload"))).toBe(true);
    expect(needsSnapshotBefore("PUT", at("/_matrix/client/v3/sendToDevice/m.room.encrypted/t1"))).toBe(true);
    expect(needsSnapshotBefore("PUT", at("/_matrix/client/v3/rooms/!r:a/send/m.room.encrypted/t1"))).toBe(
      true,
    );
    expect(needsSnapshotBefore("POST", at("/_matrix/client/v3/keys/query"))).toBe(false);
    expect(needsSnapshotBefore("GET", at("/_matrix/client/v3/rooms/!r:a/joined_members"))).toBe(false);
  });
});
