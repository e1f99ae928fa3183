import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { createLogger } from "../logging.ts";
import { createStore, type Store } from "../store/index.ts";
import type { AsUser } from "../synapse/as-user.ts";
import { createCatchUp, isCaughtUp, type CatchUp, type RoomEvent } from "./catch-up.ts";

const ROOM = "!room:hospital-a.example";
const OTHER = "!other:hospital-a.example";
const READER = "@reader:hospital-a.example";

/** A user's text in a room, `age` ms old when Synapse sends it (by default: just created). */
let clock = 1_000;
const message = (id: string, age = 0, room = ROOM): RoomEvent => ({
  type: "m.room.message",
  room_id: room,
  event_id: `$${id}`,
  sender: "@alice:hospital-a.example",
  origin_server_ts: clock++,
  content: { msgtype: "m.text", body: id },
  unsigned: { age },
});

/**
 * The frame's catch-up on transactions Synapse holds back: when it runs, the service gets what
 * the room holds between the last handled event and the transaction's first, in the room's order,
 * before the transaction's own; when nothing points at a recovery, it costs no request at all.
 */
describe("catch-up on held-back transactions", () => {
  let store: Store;
  let catchUp: CatchUp;
  /** The rooms' events, oldest first: /context answers from them. */
  let timeline: RoomEvent[] = [];
  const calls: string[] = [];
  const handled: string[] = [];
  let readers: Record<string, string | undefined> = {};
  const as = (() => (_method: string, path: string) => {
    calls.push(path);
    const id = decodeURIComponent(/\/context\/([^?]+)/.exec(path)?.[1] ?? "");
    const room = decodeURIComponent(/\/rooms\/([^/]+)/.exec(path)?.[1] ?? "");
    const events = timeline.filter((e) => e.room_id === room);
    const at = events.findIndex((e) => e.event_id === id);
    // Events before the asked one, newest first (as Synapse answers), without room_id.
    const limit = Number(/limit=(\d+)/.exec(path)?.[1] ?? 10);
    const before = events
      .slice(0, Math.max(0, at))
      .reverse()
      .slice(0, limit / 2);
    return Promise.resolve({ events_before: before.map(({ room_id: _r, ...e }) => e) });
  }) as unknown as (userId: string) => AsUser;

  const happen = (...events: RoomEvent[]) => timeline.push(...events);
  /** Synapse sends these events, one transaction each; the service handles what the frame hands over. */
  const send = async (...ids: string[]) => {
    for (const id of ids) {
      const event = timeline.find((e) => e.event_id === `$${id}`);
      if (!event) throw new Error(`no event ${id}`);
      const all = await catchUp.prepare([event]);
      handled.push(...all.map((e) => `${(e.event_id ?? "").slice(1)}${isCaughtUp(e) ? "*" : ""}`));
      await catchUp.handled(all);
    }
  };
  const fresh = async () => {
    catchUp = createCatchUp({
      service: "test",
      knex: store.knex,
      as,
      readerFor: (roomId) => Promise.resolve(readers[roomId]),
      log: createLogger("test", "silent"),
      metrics: new Registry(),
    });
    await catchUp.init();
  };

  beforeAll(async () => {
    store = await createStore({ type: "pglite", data_dir: "memory://" });
  }, 60_000);
  afterAll(async () => {
    await store.close();
  });
  beforeEach(async () => {
    await store.knex("appservice_room_positions").delete();
    await store.knex("appservice_caught_up").delete();
    calls.length = 0;
    handled.length = 0;
    timeline = [];
    readers = { [ROOM]: READER, [OTHER]: READER };
    await fresh();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("asks Synapse nothing after a start with nothing stored, and hands over in arrival order", async () => {
    catchUp.ready();
    happen(message("m1"), message("m2"), message("m3"));
    await send("m1", "m2", "m3");
    expect(calls).toEqual([]);
    expect(handled).toEqual(["m1", "m2", "m3"]);
  });

  it("catches up when a transaction carries events from before the service was ready", async () => {
    catchUp.ready();
    happen(message("m1"), message("m2"), message("m3", 1_500));
    // m2 is held back; m3 was created before the service was ready (Synapse stored it meanwhile).
    await send("m1", "m3");
    expect(calls).toHaveLength(1);
    expect(calls[0]).toContain(`/context/${encodeURIComponent("$m3")}`);
    expect(handled).toEqual(["m1", "m2*", "m3"]);
    // The held-back transaction, when it comes, hands over nothing, even to a restarted service.
    await fresh();
    catchUp.ready();
    await send("m2");
    expect(handled).toEqual(["m1", "m2*", "m3"]);
  });

  it("after a failed transaction: every transaction for a minute, then once more per room", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    catchUp.ready();
    happen(...["m1", "m2", "m3", "m4", "m5"].map((id) => message(id)), message("o1", 0, OTHER));
    await send("m1", "o1");
    catchUp.suspect();
    await send("m2", "m3");
    expect(calls).toHaveLength(2);
    vi.advanceTimersByTime(61_000);
    await send("m4", "m5");
    expect(calls).toHaveLength(3);
    expect(handled).toEqual(["m1", "o1", "m2", "m3", "m4", "m5"]);
  });

  it("an event Synapse held back (2 s old or more) starts a catch-up; a long look when the short one misses", async () => {
    catchUp.ready();
    happen(message("m1"), ...Array.from({ length: 5 }, (_, i) => message(`g${String(i)}`)));
    happen(message("m2", 2_500));
    await send("m1", "m2");
    // 3 events back did not reach m1: then up to 50.
    expect(calls).toHaveLength(2);
    expect(handled).toEqual(["m1", "g0*", "g1*", "g2*", "g3*", "g4*", "m2"]);
  });

  it("does not look before an event older than the last one handled, nor where no reader is", async () => {
    catchUp.ready();
    happen(message("m1"), message("m2"), message("m3"));
    await send("m1", "m3");
    catchUp.suspect();
    await send("m2"); // a late event itself: nothing is missing before it
    expect(calls).toEqual([]);
    readers = {};
    happen(message("m4"), message("m5"));
    await send("m5");
    expect(calls).toEqual([]);
    // The late m2 did not move the room's position back.
    const [position] = await store.knex("appservice_room_positions").pluck<string[]>("event_id");
    expect(position).toBe("$m5");
  });
});
