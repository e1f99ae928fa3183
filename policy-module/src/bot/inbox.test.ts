import { createStore, type Store } from "@medmesh/common";
import { describe, expect, it } from "vitest";
import { storeBackends } from "../../../common/src/store/test-backends.ts";
import { POLICY_MODULE_MIGRATIONS } from "../migrations.ts";
import { needsSnapshotBefore } from "./device-state.ts";
import { createBotInbox, type RawEvent } from "./inbox.ts";
import { createBotOutbox } from "./outbox.ts";
import { createBotRecorder } from "./recorder.ts";

const BOT = "@medmesh-verify:a.example";
const ev = (id: string, room = "!dm:a"): RawEvent & { type: string } => ({
  event_id: id,
  room_id: room,
  type: "m.room.encrypted",
  sender: "@ann:a.example",
});

for (const backend of storeBackends()) {
  describe(`the bots' tables on ${backend.name}`, () => {
    const withStores = async (n: number, fn: (stores: Store[]) => Promise<void>, before?: Store) => {
      const b = await backend.make();
      const stores: Store[] = [];
      try {
        // PGlite is one process's database: a second handle is a second user of the same store.
        for (let i = 0; i < (backend.name === "PGlite" ? 1 : n); i++)
          stores.push(await createStore(b.config, { migrations: POLICY_MODULE_MIGRATIONS }));
        while (stores.length < n) stores.push(stores[0]!);
        await fn(stores);
      } finally {
        for (const s of new Set(stores)) await s.close();
        await before?.close();
        await b.cleanup();
      }
    };

    it("keeps events in order until handled, and a resent transaction's events are not taken again", () =>
      withStores(2, async ([a, b]) => {
        const inbox = createBotInbox(a!.knex, BOT);
        expect(await inbox.add([ev("$1"), ev("$2")], 1000)).toBe(2);
        // The same transaction again, received by the other replica.
        const other = createBotInbox(b!.knex, BOT);
        expect(await other.add([ev("$2"), ev("$3")])).toBe(1);
        expect(await other.add([ev("$1"), ev("$1")])).toBe(0);
        expect(await createBotInbox(a!.knex, "@other:a.example").add([ev("$1")])).toBe(1); // another bot's
        const first = await inbox.next();
        expect(first?.event).toEqual(ev("$1"));
        expect(first?.received_at).toBe(1000);
        await inbox.done("$1");
        expect((await other.next())?.event.event_id).toBe("$2");
        expect(await other.add([ev("$1")]), "handled, then resent").toBe(0);
        await other.done("$2");
        await other.done("$3");
        expect(await inbox.next()).toBeUndefined();
        // Handled rows keep the ID only, not the (encrypted) event.
        const kept: { event: string }[] = await a!
          .knex("bot_inbox")
          .where({ bot_user_id: BOT })
          .select("event");
        expect(kept.map((r) => r.event)).toEqual(["{}", "{}", "{}"]);
      }));

    it("concurrent adds from two store handles lose nothing, and each event is one row", () =>
      withStores(2, async ([a, b]) => {
        const ids = Array.from({ length: 60 }, (_, i) => `$e${String(i)}`);
        // Each replica gets every other transaction, and some twice (resent to the other).
        const txns = Array.from({ length: 20 }, (_, i) => ids.slice(i * 3, i * 3 + 3).map((id) => ev(id)));
        const counts = await Promise.all(
          txns.flatMap((t, i) => [
            createBotInbox((i % 2 ? a : b)!.knex, BOT).add(t),
            ...(i % 3 === 0 ? [createBotInbox((i % 2 ? b : a)!.knex, BOT).add(t)] : []),
          ]),
        );
        expect(
          counts.reduce((x, y) => x + y, 0),
          "new rows reported",
        ).toBe(60);
        const rows: { event_id: string }[] = await a!.knex("bot_inbox").select("event_id");
        expect(rows.map((r) => r.event_id).sort()).toEqual([...ids].sort());
        // Handled in one order, once each.
        const inbox = createBotInbox(b!.knex, BOT);
        const handled: string[] = [];
        for (let e = await inbox.next(); e; e = await inbox.next()) {
          handled.push(e.event.event_id);
          await inbox.done(e.event.event_id);
        }
        expect(handled.sort()).toEqual([...ids].sort());
      }));

    it("remembers only the most recent handled events, and none past their age", () =>
      withStores(1, async ([a]) => {
        const inbox = createBotInbox(a!.knex, BOT, { keepHandled: 2 });
        for (const id of ["$1", "$2", "$3"]) {
          await inbox.add([ev(id)]);
          await inbox.done(id);
        }
        expect(await inbox.add([ev("$1"), ev("$3")])).toBe(1);
        const aged = createBotInbox(a!.knex, "@b:a", { keepHandledMs: 1000 });
        await aged.add([ev("$old")], 0);
        await aged.done("$old", 1);
        await aged.add([ev("$new")], 5000);
        await aged.done("$new", 5000);
        expect(await aged.add([ev("$old"), ev("$new")]), "the old one is forgotten").toBe(1);
      }));

    it("records a transaction's events for the bots in their rooms only, on any replica", () =>
      withStores(2, async ([a, b]) => {
        const isBot = (u: string) => u === BOT;
        const join = {
          type: "m.room.member",
          room_id: "!dm:a",
          event_id: "$j",
          state_key: BOT,
          sender: BOT,
          content: { membership: "join" },
        };
        expect(
          await createBotRecorder({ knex: a!.knex, isBot })([join, ev("$m1"), ev("$x", "!other:a")]),
        ).toEqual([BOT]);
        const own = { ...ev("$mine"), sender: BOT };
        expect(await createBotRecorder({ knex: b!.knex, isBot })([ev("$m2"), own])).toEqual([BOT]);
        const rows: { event_id: string }[] = await a!.knex("bot_inbox").orderBy("seq").select("event_id");
        expect(rows.map((r) => r.event_id)).toEqual(["$m1", "$m2"]);
        const leave = { ...join, event_id: "$l", content: { membership: "leave" } };
        expect(await createBotRecorder({ knex: b!.knex, isBot })([leave, ev("$m3")])).toEqual([]);
      }));

    it("queues notices from any replica, all of them, in order", () =>
      withStores(2, async ([a, b]) => {
        await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            createBotOutbox((i % 2 ? a : b)!.knex, BOT).queue("@ann:a.example", `n${String(i)}`),
          ),
        );
        const outbox = createBotOutbox(a!.knex, BOT);
        expect(await outbox.users()).toEqual(["@ann:a.example"]);
        const waiting = await outbox.waiting("@ann:a.example");
        expect(waiting.map((n) => n.text).sort()).toEqual(
          Array.from({ length: 20 }, (_, i) => `n${String(i)}`).sort(),
        );
        await outbox.sent(waiting[0]!.seq);
        expect(await outbox.waiting("@ann:a.example")).toHaveLength(19);
        // Given up after their time: only the older ones.
        await outbox.queue("@bob:a.example", "old", 1000);
        expect(await outbox.prune(2000)).toBe(1);
        expect(await outbox.users()).toEqual(["@ann:a.example"]);
      }));

    it("moves the documents of earlier versions into the tables (nothing pending is lost)", async () => {
      const b = await backend.make();
      try {
        const older = POLICY_MODULE_MIGRATIONS.filter((m) => m.version < 38);
        const before = await createStore(b.config, { migrations: older });
        const pending = [{ event: ev("$p"), received_at: 1234 }];
        await before.documents.put(`bot.inbox:${BOT}`, JSON.stringify({ pending, handled: ["$h"] }));
        await before.documents.put(`bot.device:${BOT}`, JSON.stringify({ device_id: "D", crypto: null }));
        await before.documents.put("bot.pending:@ann:a.example", JSON.stringify(["one", "two"]));
        await before.close();
        const after = await createStore(b.config, { migrations: POLICY_MODULE_MIGRATIONS });
        try {
          const inbox = createBotInbox(after.knex, BOT);
          expect(await inbox.next()).toEqual({ event: ev("$p"), received_at: 1234 });
          expect(await inbox.add([ev("$h"), ev("$p")])).toBe(0);
          const waiting = await createBotOutbox(after.knex, BOT).waiting("@ann:a.example");
          expect(waiting.map((n) => n.text)).toEqual(["one", "two"]);
          expect(await after.documents.get(`bot.inbox:${BOT}`)).toBeUndefined();
          expect(await after.documents.get("bot.pending:@ann:a.example")).toBeUndefined();
        } finally {
          await after.close();
        }
      } finally {
        await b.cleanup();
      }
    });
  });
}

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
