import { generateKeyPairSync } from "node:crypto";
import { createLogger, createStore, type AuditLog, type Store } from "@medmesh/common";
import { Registry } from "prom-client";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { InteropConfig } from "../interop/config.ts";
import type { BridgeCrypto } from "./crypto.ts";
import type { Ghosts } from "./ghosts.ts";
import type { MatrixSide } from "./matrix.ts";
import { BRIDGE_MIGRATIONS, createBridgeStore } from "../store/index.ts";
import { outbound } from "./outbound.ts";

const ROOM = "!portal:hospital-a.example";
const GHOST = "@bridge_refmsg_anna:hospital-a.example";
const ALICE = "@alice:hospital-a.example";

/** A Matrix user's text in the portal, `age` ms old when Synapse sends it (by default: just created). */
const message = (id: string, age = 0) => ({
  type: "m.room.message",
  room_id: ROOM,
  event_id: `$${id}`,
  sender: ALICE,
  content: { msgtype: "m.text", body: id },
  unsigned: { age },
});

/**
 * The catch-up on transactions Synapse holds back (docs/bridge.md, "Late transactions"): when it
 * runs, it records what the room holds between the last recorded event and the transaction's
 * first, in the room's order; when nothing points at a recovery, it costs no request at all.
 */
describe("outbound: catch-up on held-back transactions", () => {
  let store: Store;
  let out: ReturnType<typeof outbound>;
  /** The room's events, oldest first: /context answers from it. */
  let timeline: ReturnType<typeof message>[] = [];
  const calls: string[] = [];
  const matrix = {
    call: (_user: string, _method: string, path: string) => {
      calls.push(path);
      const id = decodeURIComponent(/\/context\/([^?]+)/.exec(path)?.[1] ?? "");
      const at = timeline.findIndex((e) => e.event_id === id);
      // Events before the asked one, newest first (as Synapse answers).
      return Promise.resolve({ events_before: timeline.slice(0, Math.max(0, at)).reverse() });
    },
    membershipChanged: () => undefined,
  };
  /** Events happen in the room; Synapse then sends some of them to the bridge, one transaction each. */
  const happen = (...events: ReturnType<typeof message>[]) => timeline.push(...events);
  const send = async (...ids: string[]) => {
    for (const id of ids) {
      const event = timeline.find((e) => e.event_id === `$${id}`);
      if (!event) throw new Error(`no event ${id} in the room`);
      await out.record([event], {});
    }
  };
  const recorded = async () =>
    (await store.knex("bridge_outbound").orderBy("seq").pluck<string[]>("idempotency_key")).map((k) =>
      k.replace(/^mx-\$/, ""),
    );

  beforeAll(async () => {
    store = await createStore({ type: "pglite", data_dir: "memory://" }, { migrations: BRIDGE_MIGRATIONS });
  });
  afterAll(async () => {
    await store.close();
  });
  beforeEach(async () => {
    await store.knex("bridge_outbound").delete();
    await store.knex("interop_conversations").delete();
    await store.knex("bridge_members").delete();
    await store.knex("interop_conversations").insert({
      vendor: "refmsg",
      conversation_id: "c-1",
      kind: "group",
      room_id: ROOM,
      created_at: new Date(),
    });
    await store.knex("bridge_members").insert({ room_id: ROOM, user_id: GHOST });
    calls.length = 0;
    timeline = [];
    out = outbound({
      store: createBridgeStore(store.knex),
      knex: store.knex,
      redactions: { purge: () => Promise.resolve(), flush: () => Promise.resolve() },
      ghosts: {
        isGhost: (u: string) => u.startsWith("@bridge_"),
        remoteOf: () => Promise.resolve(undefined),
      } as unknown as Ghosts,
      crypto: {} as unknown as BridgeCrypto,
      matrix: matrix as unknown as MatrixSide,
      log: createLogger("test", "silent"),
      config: { vendors: [] } as unknown as InteropConfig,
      signingKey: { keyId: "k", privateKey: generateKeyPairSync("ed25519").privateKey },
      botUserId: "@medmesh-bridge:hospital-a.example",
      audit: {} as AuditLog,
      metrics: new Registry(),
    });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("asks Synapse nothing after a start with nothing stored, and records in arrival order", async () => {
    out.ready();
    happen(message("m1"), message("m2"), message("m3"));
    await send("m1", "m2", "m3");
    expect(calls).toEqual([]);
    expect(await recorded()).toEqual(["m1", "m2", "m3"]);
  });

  it("catches up when a transaction carries events from before the bridge was ready", async () => {
    out.ready();
    happen(message("m1"), message("m2"), message("m3", 1_500));
    // m2 is held back; m3 was created before this bridge was ready (Synapse stored it meanwhile).
    await send("m1", "m3");
    expect(calls).toHaveLength(1);
    expect(calls[0]).toContain(`/context/${encodeURIComponent("$m3")}`);
    expect(await recorded()).toEqual(["m1", "m2", "m3"]);
    // The held-back transaction, when it comes, adds nothing.
    await send("m2");
    expect(await recorded()).toEqual(["m1", "m2", "m3"]);
  });

  it("after a failed transaction: every transaction for a minute, then once more per portal", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    out.ready();
    happen(...["m1", "m2", "m3", "m4", "m5"].map((id) => message(id)));
    await send("m1");
    out.suspect();
    await send("m2", "m3");
    expect(calls).toHaveLength(2);
    vi.advanceTimersByTime(61_000);
    await send("m4", "m5");
    expect(calls).toHaveLength(3);
    expect(await recorded()).toEqual(["m1", "m2", "m3", "m4", "m5"]);
  });

  it("an event Synapse held back (2 s old or more) starts a catch-up", async () => {
    out.ready();
    happen(message("m1"), message("m2", 2_500), message("m3"));
    await send("m1", "m2", "m3");
    expect(calls).toHaveLength(2);
    expect(await recorded()).toEqual(["m1", "m2", "m3"]);
  });
});
