import { Registry } from "prom-client";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createAuditLog } from "../audit/index.ts";
import { createLogger } from "../logging.ts";
import { createStore, type Store } from "../store/index.ts";
import { MatrixRequestError } from "../synapse/accounts.ts";
import type { AsUser } from "../synapse/as-user.ts";
import { createDeadLetters, type DeadLetters } from "./dead-letters.ts";
import { Permanent } from "./failures.ts";
import type { AppserviceEvent, EventHandler } from "./transactions.ts";

const ROOM = "!room:hospital-a.example";
const BOT = "@bot:hospital-a.example";
const GHOST = "@ghost_x:hospital-a.example";
const event = (id: string, type = "m.room.message"): AppserviceEvent => ({
  type,
  room_id: ROOM,
  event_id: `$${id}`,
  sender: "@alice:hospital-a.example",
});

/**
 * Dead letters: an event the service cannot act on is recorded and the rest of the transaction
 * goes on; a transient failure still fails the transaction (Synapse sends it again).
 */
describe("dead letters", () => {
  let store: Store;
  let dead: DeadLetters;
  let handled: string[] = [];
  /** Event IDs the handler refuses for good; "store" makes every call fail as a store outage would. */
  let refuse = new Set<string>();
  let fetched: string[] = [];
  const handler: EventHandler = (events, transaction) => {
    if (refuse.has("store")) return Promise.reject(new Error("connection refused"));
    for (const e of events) {
      if (refuse.has(e.event_id ?? "")) return Promise.reject(new Permanent("M_FORBIDDEN: cannot join"));
      handled.push(e.event_id ?? "");
    }
    if (Array.isArray(transaction.ephemeral)) handled.push("ephemeral");
    return Promise.resolve();
  };
  const as = ((userId: string) => (_method: string, path: string) => {
    fetched.push(userId);
    if (userId !== GHOST) return Promise.reject(new MatrixRequestError(403, "M_FORBIDDEN", "not in room"));
    const id = decodeURIComponent(path.split("/").pop() ?? "");
    return Promise.resolve({ ...event(id.slice(1)), room_id: undefined });
  }) as unknown as (userId: string) => AsUser;

  beforeAll(async () => {
    store = await createStore({ type: "pglite", data_dir: "memory://" });
  }, 60_000);
  afterAll(async () => {
    await store.close();
  });
  beforeEach(async () => {
    await store.knex("appservice_dead_letters").delete();
    handled = [];
    fetched = [];
    refuse = new Set();
    dead = createDeadLetters({
      service: "test",
      knex: store.knex,
      audit: createAuditLog(store.knex),
      botUserId: BOT,
      as,
      readerFor: () => Promise.resolve(undefined),
      isOwnUser: (u) => u.startsWith("@ghost_"),
      log: createLogger("test", "silent"),
      metrics: new Registry(),
    });
  });

  it("records an event that fails permanently and hands over the rest, ephemeral data once", async () => {
    refuse.add("$b");
    const events = [event("a"), { ...event("b", "m.room.member"), state_key: GHOST }, event("c")];
    expect(await dead.handle(events, { events, ephemeral: [{ type: "m.receipt" }] }, handler)).toBe(1);
    expect(handled.filter((h) => h !== "$a")).toEqual(["$c", "ephemeral"]);
    const [letter] = await dead.list();
    expect(letter).toMatchObject({
      event_id: "$b",
      room_id: ROOM,
      type: "m.room.member",
      state_key: GHOST,
      attempts: 1,
      error: "M_FORBIDDEN: cannot join",
    });
    expect(Object.keys(letter ?? {})).not.toContain("content");
    const audit = await createAuditLog(store.knex).find({ action: "appservice.dead_letter", object: "$b" });
    expect(audit).toHaveLength(1);
    expect(audit[0]?.details).not.toHaveProperty("content");
  });

  it("fails the transaction on a transient failure, recording nothing", async () => {
    refuse.add("store");
    await expect(dead.handle([event("a")], { events: [] }, handler)).rejects.toThrow("connection refused");
    expect(await dead.list()).toEqual([]);
  });

  it("retries by fetching the event again as a user who can read it", async () => {
    refuse.add("$b");
    await dead.handle([{ ...event("b", "m.room.member"), state_key: GHOST }], { events: [] }, handler);
    expect(await dead.retry("$b", handler)).toEqual({ outcome: "failed", error: "M_FORBIDDEN: cannot join" });
    expect((await dead.list())[0]?.attempts).toBe(2);
    refuse.clear();
    expect(await dead.retry("$b", handler)).toEqual({ outcome: "handled" });
    // The invitee (the appservice's own user) could read it; the room had no reader of its own.
    expect(fetched.at(-1)).toBe(GHOST);
    expect(handled).toEqual(["$b"]);
    expect(await dead.list()).toEqual([]);
    await expect(dead.retry("$b", handler)).rejects.toThrow("No dead letter");
  });
});
