import { createLeadership, createLogger, createStore, LeadershipLost, type Store } from "@medmesh/common";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storeBackends } from "../../../common/src/store/test-backends.ts";
import { BRIDGE_MIGRATIONS, createBridgeStore, type BridgeStore, type OutboundRow } from "../store/index.ts";
import { BridgeCrypto } from "./crypto.ts";
import { vendorJob, vendorLeaders, type VendorLeaders } from "./leaders.ts";
import { OrderedQueue } from "./queue.ts";

const log = createLogger("test", "silent");
const GHOST = "@bridge_refmsg_anna:hospital-a.example";
const message = (id: string, conversation: string) =>
  ({ type: "message", conversation_id: conversation, message_id: id, sender: "anna", text: id }) as const;

/**
 * The bridge's fences (docs/replicas.md, "The bridge"): once a vendor's lease is lost, its queue
 * records no outcome and carries no further row, its ghosts' devices refuse to run, and no crypto
 * snapshot is written over the successor's.
 */
for (const backend of storeBackends())
  describe(`bridge leadership fences on ${backend.name}`, () => {
    let db: Awaited<ReturnType<typeof backend.make>>;
    let store: Store;
    let bridge: BridgeStore;
    let leadership: ReturnType<typeof createLeadership>;
    let leaders: VendorLeaders;
    /** The successor takes the lease (as after the leader's lease ran out). */
    const takeOver = () =>
      store
        .knex("leases")
        .where({ name: vendorJob("refmsg") })
        .update({ holder: "successor" });

    beforeAll(async () => {
      db = await backend.make();
      store = await createStore(db.config, { migrations: BRIDGE_MIGRATIONS });
      bridge = createBridgeStore(store.knex);
      leadership = createLeadership({
        leases: store.leases,
        knex: store.knex,
        config: { lease_seconds: 60 },
        log,
        metrics: new Registry(),
        holder: "leader",
      });
      leaders = vendorLeaders((job) => leadership.job(job), ["refmsg", "other"]);
      await leadership.start();
    });
    afterAll(async () => {
      await leadership.stop();
      await store.close();
      await db.cleanup();
    });

    it("leads each vendor on a lease of its own", async () => {
      expect(leaders.led()).toEqual(["refmsg", "other"]);
      const held: { name: string; holder: string }[] = await store
        .knex("leases")
        .whereIn("name", ["bridge:refmsg", "bridge:other"])
        .orderBy("name")
        .select("name", "holder");
      expect(held).toEqual([
        { name: "bridge:other", holder: "leader" },
        { name: "bridge:refmsg", holder: "leader" },
      ]);
      expect(leaders.vendorOf(GHOST)).toBe("refmsg");
      expect(leaders.vendorOf("@alice:hospital-a.example")).toBeUndefined();
    });

    it("a queue row's completion is refused once the lease is lost: nothing recorded, nothing more carried", async () => {
      for (const id of ["m1", "m2"])
        await bridge.outbound.enqueue({ vendor: "refmsg", conversation_id: `c-${id}` }, `mx-$${id}`, {
          event: message(id, `c-${id}`),
        });
      const handled: string[] = [];
      let done: () => void = () => undefined;
      const first = new Promise<void>((resolve) => (done = resolve));
      const queue = new OrderedQueue<OutboundRow>({
        name: "outbound",
        table: bridge.outbound,
        failedState: "dead",
        leaders,
        log,
        metrics: new Registry(),
        concurrency: 1,
        maxAttempts: 3,
        initialBackoffMs: 10,
        maxBackoffMs: 10,
        handle: async (row) => {
          handled.push(row.idempotency_key);
          // The effect went out, then the lease passed to a successor before its outcome is recorded.
          await takeOver();
          done();
          return (trx) =>
            bridge.messages.record(trx, {
              conversation_id: row.conversation_id,
              message_id: "recorded",
              room_id: "!r:hospital-a.example",
              event_id: "$e",
            });
        },
      });
      queue.start();
      await first;
      await new Promise((r) => setTimeout(r, 700)); // a poll of the queue, at least
      await queue.stop();
      expect(handled, "the second row is left to the successor").toEqual(["mx-$m1"]);
      expect(leaders.leads("refmsg")).toBe(false);
      expect(leaders.led(), "the other vendor's lease is untouched").toEqual(["other"]);
      const rows: { idempotency_key: string; state: string; attempts: number }[] = await store
        .knex("bridge_outbound")
        .orderBy("seq")
        .select("idempotency_key", "state", "attempts");
      expect(rows).toEqual([
        { idempotency_key: "mx-$m1", state: "pending", attempts: 0 },
        { idempotency_key: "mx-$m2", state: "pending", attempts: 0 },
      ]);
      expect(await store.knex("bridge_messages").where({ message_id: "recorded" }).first()).toBeUndefined();
    });

    it("a crypto snapshot is refused once the lease is lost, and the ghost's device does not run here", async () => {
      await store.knex("bridge_ghosts").insert({
        user_id: GHOST,
        vendor: "refmsg",
        remote_id: "anna",
        device_id: "MMBSUCCESSOR",
        crypto_store: Buffer.from("the successor's snapshot"),
      });
      await expect(
        bridge.ghosts.saveCrypto(GHOST, "MMBSUCCESSOR", Buffer.from("the deposed leader's"), "s1", (trx) =>
          leaders.fenceGhost(GHOST, trx),
        ),
      ).rejects.toBeInstanceOf(LeadershipLost);
      await expect(
        bridge.ghosts.newDevice(GHOST, "MMBDEPOSED", (trx) => leaders.fenceGhost(GHOST, trx)),
      ).rejects.toBeInstanceOf(LeadershipLost);
      const crypto = new BridgeCrypto({
        homeserverUrl: "http://127.0.0.1:9", // never asked: the device is refused before any request
        asToken: "unused",
        ghosts: bridge.ghosts,
        portals: bridge.portals,
        leaders,
        log,
      });
      await expect(crypto.device(GHOST)).rejects.toBeInstanceOf(LeadershipLost);
      const row: { device_id: string; crypto_store: Buffer; sync_token: string | null } = await store
        .knex("bridge_ghosts")
        .where({ user_id: GHOST })
        .first("device_id", "crypto_store", "sync_token");
      expect(row.device_id).toBe("MMBSUCCESSOR");
      expect(Buffer.from(row.crypto_store).toString()).toBe("the successor's snapshot");
      expect(row.sync_token).toBeNull();
      // The vendor this replica still leads writes as before.
      await store.knex("bridge_ghosts").insert({
        user_id: "@bridge_other_bo:h.example",
        vendor: "other",
        remote_id: "bo",
        device_id: "MMBOTHER",
      });
      await bridge.ghosts.saveCrypto(
        "@bridge_other_bo:h.example",
        "MMBOTHER",
        Buffer.from("ok"),
        "s1",
        (trx) => leaders.fenceGhost("@bridge_other_bo:h.example", trx),
      );
      const other: { sync_token: string } = await store
        .knex("bridge_ghosts")
        .where({ user_id: "@bridge_other_bo:h.example" })
        .first("sync_token");
      expect(other.sync_token).toBe("s1");
    });
  });
