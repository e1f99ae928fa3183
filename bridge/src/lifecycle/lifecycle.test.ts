import { createAuditLog, createLogger, createStore, type Store } from "@medmesh/common";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { storeBackends } from "../../../common/src/store/test-backends.ts";
import { InteropConfigSchema } from "../interop/config.ts";
import { BRIDGE_MIGRATIONS, createBridgeStore, type BridgeStore } from "../store/index.ts";
import { createPruner, redactionPurge, removedCounter } from "./index.ts";
import { UNCARRIED } from "./pruner.ts";

const DAY = 86_400_000;
const PORTAL = { vendor: "refmsg", conversation_id: "c-1", room_id: "!portal:hospital-a.example" };
const lifecycle = InteropConfigSchema.parse({
  listen: { port: 0 },
  public_url: "https://bridge.hospital-a.example",
  signing_key: { key_id: "k", private_key_file: "unused.pem" },
}).lifecycle;
const message = (text: string) =>
  ({ type: "message", conversation_id: "c-1", message_id: text, sender: "anna", text }) as const;

/** What the bridge keeps, and for how long (docs/bridge.md, "What the bridge keeps"). */
for (const backend of storeBackends())
  describe(`bridge lifecycle on ${backend.name}`, () => {
    let db: Awaited<ReturnType<typeof backend.make>>;
    let store: Store;
    let bridge: BridgeStore;
    const metrics = new Registry();
    const removed = removedCounter(metrics);
    const log = createLogger("test", "silent");
    // This replica's configuration has the vendor "refmsg" only.
    const newPruner = () =>
      createPruner({
        store: bridge,
        leases: store.leases,
        config: lifecycle,
        vendors: ["refmsg"],
        log,
        removed,
      });
    const count = async (table: string) =>
      Number((await store.knex(table).count<{ n: string }[]>({ n: "*" }))[0]?.n);

    beforeAll(async () => {
      db = await backend.make();
      store = await createStore(db.config, { migrations: BRIDGE_MIGRATIONS });
      bridge = createBridgeStore(store.knex);
    });
    afterAll(async () => {
      await store.close();
      await db.cleanup();
    });

    it("drops an event's content when it is carried, keeping the row (order, idempotency)", async () => {
      await bridge.outbound.enqueue(PORTAL, "mx-$a", { event: message("secret a") });
      await bridge.outbound.enqueue(PORTAL, "mx-$b", {
        encrypted: { type: "m.room.encrypted", body: "cipher" },
      });
      const [a] = await bridge.outbound.heads(10);
      expect(a?.event).toMatchObject({ text: "secret a" });
      await bridge.outbound.retryLater(a!, 1, "the messenger answered 503", new Date(0));
      await bridge.outbound.complete(a!);
      const row: unknown = await store.knex("bridge_outbound").where({ idempotency_key: "mx-$a" }).first();
      expect(row).toMatchObject({ state: "delivered", event: null, encrypted: null, last_error: null });
      // The one behind it keeps its content until it is carried too.
      const waiting = await store
        .knex("bridge_outbound")
        .where({ idempotency_key: "mx-$b" })
        .first<{ encrypted: unknown }>("encrypted");
      expect(waiting.encrypted).toMatchObject({ body: "cipher" });

      const seq = await bridge.inbound.accept(store.knex, {
        vendor: "refmsg",
        conversation_id: "c-1",
        event: message("secret in"),
      });
      const [inbound] = await bridge.inbound.heads(10);
      expect(Number(inbound?.seq)).toBe(seq);
      await bridge.inbound.complete(inbound!);
      expect(await store.knex("interop_inbound").where({ seq }).first()).toMatchObject({
        state: "done",
        event: null,
      });
    });

    it("forgets a vendor's file bytes once in Matrix, and still knows a retried upload", async () => {
      const data = Buffer.from("file bytes");
      const upload = { media_id: "f-1", vendor: "refmsg", content_type: "application/pdf", data };
      expect(await bridge.media.putUpload(upload)).toBe("stored");
      await bridge.media.uploaded("f-1", { mxc: "mxc://hospital-a.example/abc", file: null });
      const row = await bridge.media.get("f-1", "refmsg");
      expect(row).toMatchObject({ data: null, mxc: "mxc://hospital-a.example/abc" });
      expect(Number(row?.size)).toBe(data.length);
      expect(await bridge.media.putUpload(upload)).toBe("same");
      expect(await bridge.media.putUpload({ ...upload, data: Buffer.from("other") })).toBe("conflict");
      expect(await bridge.media.putUpload({ ...upload, vendor: "other" })).toBe("conflict");
    });

    it("takes a redacted event's copies; a retention redaction its message ID too, audited without content", async () => {
      await bridge.outbound.enqueue(PORTAL, "mx-$c", { event: message("secret c") });
      await bridge.media.recordMatrixFile({
        media_id: "mx-c",
        vendor: "refmsg",
        content_type: "image/png",
        mxc: "mxc://hospital-a.example/c",
        file: { url: "mxc://hospital-a.example/c", key: { k: "key" } },
        event_id: "$c",
      });
      const mapping = { conversation_id: "c-1", room_id: PORTAL.room_id };
      await bridge.messages.record(store.knex, { ...mapping, message_id: "m-c", event_id: "$c" });
      await bridge.messages.record(store.knex, { ...mapping, message_id: "m-d", event_id: "$d" });
      const audit = createAuditLog(store.knex);
      const purge = redactionPurge({ store: bridge, audit, log, removed });

      // A person's deletion: the content and the file go, the message ID stays (edits, replies).
      await purge.purge(PORTAL, "$c", { retention: false, by: "@alice:hospital-a.example" });
      await purge.flush();
      expect(await store.knex("bridge_outbound").where({ idempotency_key: "mx-$c" }).first()).toMatchObject({
        state: "pending",
        event: null,
      });
      expect(await bridge.media.get("mx-c", "refmsg")).toBeUndefined();
      expect(await bridge.messages.eventOf("c-1", "m-c")).toBe("$c");
      expect(await audit.find({ action: "bridge.retention_delete" })).toHaveLength(0);

      await purge.purge(PORTAL, "$d", { retention: true, by: "@medmesh:hospital-a.example" });
      await purge.flush();
      expect(await bridge.messages.eventOf("c-1", "m-d")).toBeUndefined();
      const [record] = await audit.find({ action: "bridge.retention_delete" });
      expect(record).toMatchObject({
        actor: "@medmesh:hospital-a.example",
        object: PORTAL.room_id,
        details: { event_ids: ["$d"], message_ids: 1 },
      });
    });

    it("prunes on the clock: records after the idempotency window, settled rows and files after retention", async () => {
      const requests = store.knex("interop_requests");
      await requests.insert({
        vendor: "refmsg",
        idempotency_key: "k-1",
        request_hash: "h",
        status: 202,
        response: { accepted: true, event_seq: 1 },
        received_at: new Date(),
      });
      expect(await bridge.requests.useNonce("refmsg", "n-1", new Date(Date.now() + 600_000))).toBe(true);
      // A given-up event keeps its content for an operator's retry until the retention period ends.
      // (In a conversation of its own: only a conversation's oldest pending row is carried.)
      await bridge.outbound.enqueue({ ...PORTAL, conversation_id: "c-2" }, "mx-$dead", {
        event: message("secret dead"),
      });
      const dead = (await bridge.outbound.heads(10)).find((r) => r.idempotency_key === "mx-$dead");
      await bridge.outbound.giveUp(dead!, 1, "the messenger answered 400");
      const pruner = newPruner();
      const at = (days: number) => new Date(Date.now() + days * DAY);

      expect(await pruner.run(at(1))).toMatchObject({ ran: true, requests: 0, nonces: 1, outbound_rows: 0 });
      expect(await bridge.requests.useNonce("refmsg", "n-1", at(2))).toBe(true);
      expect(await pruner.run(at(8))).toMatchObject({ requests: 1, outbound_rows: 0, media_rows: 0 });
      expect(await count("interop_requests")).toBe(0);
      expect((await bridge.outbound.failed(10)).map((f) => f.seq)).toEqual([Number(dead?.seq)]);

      const pending = Number(
        (
          await store.knex("bridge_outbound").where({ state: "pending" }).count<{ n: string }[]>({ n: "*" })
        )[0]?.n,
      );
      const result = await pruner.run(at(31));
      expect(result.outbound_rows).toBeGreaterThan(0);
      expect(result.inbound_rows).toBe(1);
      expect(result.media_rows).toBe(1);
      // Pending rows wait for their delivery, whatever their age.
      expect(await store.knex("bridge_outbound").whereNot("state", "pending").first()).toBeUndefined();
      expect(await count("bridge_outbound")).toBe(pending);
      expect(await count("bridge_media")).toBe(0);
      const metric = await metrics.getSingleMetricAsString("medmesh_bridge_store_removed_total");
      expect(metric).toMatch(/what="requests",why="idempotency_window"} 1/);
    });

    it("gives up the rows of a vendor no replica carries, so they go in their time; a vendor led elsewhere keeps its rows", async () => {
      const gone = { vendor: "gone", conversation_id: "g-1" };
      const elsewhere = { vendor: "elsewhere", conversation_id: "e-1" };
      await bridge.outbound.enqueue(gone, "mx-$gone", { event: message("secret gone") });
      await bridge.outbound.enqueue(elsewhere, "mx-$elsewhere", { event: message("secret elsewhere") });
      await bridge.outbound.enqueue({ ...PORTAL, conversation_id: "c-3" }, "mx-$here", {
        event: message("secret here"),
      });
      await bridge.inbound.accept(store.knex, { ...gone, event: message("from gone") });
      // A replica with an older configuration still leads "elsewhere"; "gone" had a lease once.
      await store.leases.tryAcquire("bridge:elsewhere", "old-replica", 60_000);
      await store.knex("leases").insert({ name: "bridge:gone", holder: "old", expires_at: new Date(0) });
      const pruner = newPruner();
      const stateOf = async (table: string, vendor: string) =>
        store
          .knex(table)
          .where({ vendor })
          .select("state", table === "interop_inbound" ? "error" : "last_error as error");

      expect(await pruner.run()).toMatchObject({ ran: true, uncarried_rows: 2 });
      expect(await stateOf("bridge_outbound", "gone")).toEqual([{ state: "dead", error: UNCARRIED }]);
      expect(await stateOf("interop_inbound", "gone")).toEqual([{ state: "failed", error: UNCARRIED }]);
      expect(await stateOf("bridge_outbound", "elsewhere")).toEqual([{ state: "pending", error: null }]);
      expect(
        await store.knex("bridge_outbound").where({ idempotency_key: "mx-$here" }).first("state"),
      ).toEqual({ state: "pending" });
      // Given up, the rows keep their content for an operator until the retention period ends.
      expect((await bridge.outbound.failed(100)).some((f) => f.vendor === "gone")).toBe(true);
      expect(await pruner.run()).toMatchObject({ uncarried_rows: 0 });
      await pruner.run(new Date(Date.now() + 31 * DAY));
      expect(await count("interop_inbound")).toBe(0);
      expect(await store.knex("bridge_outbound").where({ vendor: "gone" }).first()).toBeUndefined();
      expect(await stateOf("bridge_outbound", "elsewhere")).toEqual([{ state: "pending", error: null }]);
    });
  });
