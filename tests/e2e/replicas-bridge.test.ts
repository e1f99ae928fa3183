import { createStore, loadConfigFile, type Store } from "@medmesh/common";
import { MsgType, type MatrixClient, type MatrixEvent } from "matrix-js-sdk";
import { afterAll, describe, expect, it } from "vitest";
import { BridgeConfigSchema } from "../../bridge/src/config.ts";
import { vendorJob } from "../../bridge/src/core/leaders.ts";
import { TestVendor } from "../harness/interop-vendor.ts";
import {
  postgresForSuite,
  roomBodies,
  useTestNetwork,
  waitForRoomEvent,
  waitUntil,
  withSynapseDb,
  type TestUser,
} from "../harness/index.ts";
import { bridgeReplica, leads as leadsJob, type ReplicaProcess } from "../harness/replica-process.ts";

// The bridge on replicas (docs/replicas.md, "The bridge"): two bridge processes on one PostgreSQL
// store. The vendor's queue rows and its ghosts' devices run on the leader of `bridge:<vendor>`;
// the other replica is the one Synapse sends its transactions to and the vendor sends its
// requests to, so everything it accepts is carried by the leader. The leader is killed with
// SIGKILL while messages flow both ways through an encrypted portal: the standby takes over within
// the bound, with the same ghost devices, and every message arrives once on each side.
const postgresUrl = postgresForSuite("replicas: bridge");
const LEASE_SECONDS = 3;
const MESSAGES = 30;
const JOB = vendorJob("refmsg");

if (postgresUrl) {
  const vendor = new TestVendor();
  await vendor.start();
  afterAll(() => vendor.stop());
  const net = useTestNetwork({
    name: "replicas-bridge",
    organisations: 1,
    postgresUrl,
    organisationSettings: { 0: { bridge_vendors: [vendor.setting] } },
  });
  const org = () => net().orgs[0]!;
  const replica = (name: string, ownPorts: boolean): Promise<ReplicaProcess> =>
    bridgeReplica(org(), net().dataDir, name, { ownPorts, leaseSeconds: LEASE_SECONDS });
  const leads = (r: ReplicaProcess) => leadsJob(org(), r, JOB, "bridge");
  const ghost = (remoteId: string) => `@bridge_refmsg_${remoteId}:${org().serverName}`;
  /** The ghost's device, as the bridge's store keeps it. */
  const storedDevice = async (userId: string): Promise<string | null | undefined> =>
    (
      await store
        .knex("bridge_ghosts")
        .where({ user_id: userId })
        .first<{ device_id: string | null } | undefined>("device_id")
    )?.device_id;
  /** The user's devices as Synapse has them. */
  const synapseDevices = (userId: string) =>
    withSynapseDb(org(), async (db) =>
      (
        await db.all<{ device_id: string }>(
          "SELECT device_id FROM devices WHERE user_id = ? AND NOT hidden ORDER BY device_id",
          [userId],
        )
      ).map((d) => d.device_id),
    );
  /** What a user sent in a room, as Synapse stored it (encrypted: counted, not read). */
  /** The last message of each direction arrived: in Alice's client, and at the vendor. */
  const bothArrived = async (fromVendor: string | undefined, fromMatrix: string | undefined) => {
    await waitForRoomEvent(client, roomId, (e) => e.getContent().body === fromVendor, {
      description: "the last vendor message",
      timeoutMs: 120_000,
    });
    await vendor.delivered((e) => e.text === fromMatrix, "the last Matrix message at the vendor", 120_000);
  };
  const encryptedEventsBy = (roomId: string, userId: string) =>
    withSynapseDb(org(), (db) =>
      db.all<{ event_id: string }>(
        "SELECT event_id FROM events WHERE room_id = ? AND sender = ? AND type = 'm.room.encrypted'",
        [roomId, userId],
      ),
    );

  let store: Store;
  let first: ReplicaProcess;
  let second: ReplicaProcess;
  let alice: TestUser;
  let client: MatrixClient;
  let roomId: string;
  let annaDevice: string | null | undefined;
  let bobDevice: string | null | undefined;
  let senderKey: string | null = null;

  describe("the bridge on replicas", () => {
    afterAll(async () => {
      second.process.signal("SIGCONT"); // a failed pause test would leave it stopped
      await first.process.stop("SIGTERM");
      await second.process.stop("SIGTERM");
      await store.close();
    });

    it("one leader per vendor; a clean stop hands it over at once; the standby accepts both sides' traffic for the leader", async () => {
      await org()
        .services.find((s) => s.name === "bridge")
        ?.stop();
      store = await createStore(loadConfigFile(BridgeConfigSchema, org().paths.bridgeConfig).store);
      first = await replica("first", false);
      second = await replica("second", true);
      await first.process.start();
      await waitUntil(async () => (await leads(first)) === true, "the first leads the vendor");
      await second.process.start();
      expect(await leads(second), "the second stands by").toBe(false);
      // A rolling restart: the first's clean stop releases the lease, the second takes it at its
      // next try; started again, the first receives Synapse's transactions and the vendor's
      // requests as the standby.
      await first.process.stop("SIGTERM");
      const stopped = Date.now();
      await waitUntil(async () => (await leads(second)) === true, "the second took the vendor over");
      const handover = (Date.now() - stopped) / 1000;
      await first.process.start();
      expect(await leads(first), "the first stands by").toBe(false);
      vendor.connect(first.clientUrl, org().paths.bridgeSigningKey);

      alice = await net().registerUser(org(), "alice");
      client = await net().client(alice);
      roomId = await vendor.openConversation(
        { conversation_id: "rep", kind: "direct", creator: "anna", members: ["anna", alice.userId] },
        client,
      );
      await vendor.send({
        type: "message",
        conversation_id: "rep",
        message_id: "hello",
        sender: "anna",
        text: "hello",
      });
      const hello = await waitForRoomEvent(client, roomId, (e) => e.getContent().body === "hello", {
        description: "Anna's first message",
      });
      expect(hello.isEncrypted(), "the portal is encrypted").toBe(true);
      senderKey = hello.getSenderKey();
      expect(senderKey).toBeTruthy();
      annaDevice = await storedDevice(ghost("anna"));
      expect(annaDevice).toMatch(/^MMB/);

      // Recorded by the standby (encrypted: it drives no device), decrypted and delivered by the leader.
      await client.sendMessage(roomId, { msgtype: MsgType.Text, body: "hi" });
      await vendor.delivered((e) => e.text === "hi", "Alice's first message at the vendor");

      // Alice invites a ghost the bridge has not met: the invite reaches the standby, which asks
      // the leader for the ghost's device (through the store) before the ghost joins.
      const direct = await client.createRoom({ invite: [ghost("bob")], is_direct: true });
      await waitUntil(
        () => Promise.resolve(client.getRoom(direct.room_id)?.getMember(ghost("bob"))?.membership === "join"),
        "Bob's ghost joined",
      );
      await vendor.delivered(
        (e) => e.type === "conversation.create" && e.conversation_id === direct.room_id,
        "the new conversation at the vendor",
      );
      bobDevice = await storedDevice(ghost("bob"));
      expect(bobDevice).toMatch(/^MMB/);
      expect(await synapseDevices(ghost("bob"))).toEqual([bobDevice]);
      process.stdout.write(`replicas-bridge: a clean stop handed ${JOB} over in ${handover.toFixed(2)} s\n`);
    });

    it("kill -9 of the leader mid-traffic: the standby takes over within the bound, with the same devices; every message once each way", async () => {
      const vTexts = Array.from({ length: MESSAGES }, (_, i) => `v${String(i + 1).padStart(3, "0")}`);
      const mTexts = Array.from({ length: MESSAGES }, (_, i) => `m${String(i + 1).padStart(3, "0")}`);
      const vendorSending = vendor.sendTexts("rep", "anna", vTexts, 150);
      const matrixSending = (async () => {
        for (const body of mTexts) {
          await client.sendMessage(roomId, { msgtype: MsgType.Text, body });
          await new Promise((r) => setTimeout(r, 150));
        }
      })();
      const seen = new Set<string>();
      const arrivedInMatrix = (e: MatrixEvent) => {
        const body = String(e.getContent().body);
        if (/^v\d{3}$/.test(body)) seen.add(body);
        return seen.size >= 5;
      };
      await waitForRoomEvent(client, roomId, arrivedInMatrix, { description: "some vendor messages" });
      await vendor.delivered(
        () => vendor.texts(/^m\d{3}$/).length >= 5,
        "some Matrix messages at the vendor",
      );

      await second.process.kill();
      const killed = Date.now();
      await waitUntil(async () => (await leads(first)) === true, "the standby took the vendor over", 60_000);
      const takeover = (Date.now() - killed) / 1000;
      // The lease runs out at most lease_seconds after the last renewal, a standby tries every
      // third of it; then a second or two for the work to start (generous: a shared machine).
      expect(takeover, "takeover (s)").toBeLessThan((LEASE_SECONDS * 4) / 3 + 5);
      const retries = await vendorSending;
      await matrixSending;

      await bothArrived(vTexts.at(-1), mTexts.at(-1));
      // The killed leader delivers nothing after its exit: what arrives after it, the new leader carried.
      const firstAfter = vendor.received.find((r) => r.at > killed)?.at;
      await new Promise((r) => setTimeout(r, 3000)); // anything repeated would have arrived by now

      // Matrix → vendor: each message once, in order (the stand-in keeps the first of each
      // Idempotency-Key; a repeat of the same key is counted in `duplicates`).
      expect(vendor.texts(/^m\d{3}$/)).toEqual(mTexts);
      // Only rows in flight at the kill may be repeated (by the successor, under the same key); two
      // replicas carrying the queue would have repeated nearly every row.
      const { concurrency } = loadConfigFile(BridgeConfigSchema, org().paths.bridgeConfig).interop!.delivery;
      expect(vendor.duplicates, "repeats absorbed by the webhook").toBeLessThanOrEqual(concurrency);
      // vendor → Matrix: each once, in order, decrypted by Alice's client; and once in Synapse's events.
      const bodies = await roomBodies(client, roomId);
      expect(bodies.filter((b) => /^v\d{3}$/.test(b))).toEqual(vTexts);
      expect(bodies.filter((b) => b.startsWith("⚠ Not delivered"))).toEqual([]);
      expect((await encryptedEventsBy(roomId, ghost("anna"))).length, "Anna's events in Synapse").toBe(
        MESSAGES + 1,
      );
      // The same devices: in the store, and each ghost's only device on Synapse; the messages sent
      // after the takeover encrypted by Anna's device with its keys restored.
      expect(await storedDevice(ghost("anna"))).toBe(annaDevice);
      expect(await storedDevice(ghost("bob"))).toBe(bobDevice);
      expect(await synapseDevices(ghost("anna"))).toEqual([annaDevice]);
      expect(await synapseDevices(ghost("bob"))).toEqual([bobDevice]);
      const last = await waitForRoomEvent(client, roomId, (e) => e.getContent().body === vTexts.at(-1), {
        description: "the last vendor message",
      });
      expect(last.isDecryptionFailure()).toBe(false);
      expect(last.getSenderKey(), "sent from the same device").toBe(senderKey);
      expect(await leads(first)).toBe(true);
      process.stdout.write(
        `replicas-bridge: the standby led ${JOB} ${takeover.toFixed(2)} s after the kill -9 of its leader ` +
          `(lease ${String(LEASE_SECONDS)} s), carried its first row to the vendor ${firstAfter === undefined ? "?" : ((firstAfter - killed) / 1000).toFixed(2)} s after; ` +
          `${String(MESSAGES)} messages each way, ${String(retries)} vendor retries, ${String(vendor.duplicates)} repeats absorbed by the webhook\n`,
      );
    });

    it("a paused leader (SIGSTOP) is deposed: resumed, it carries nothing more; every message once, the devices the same", async () => {
      // The roles of the kill again: the first hands the vendor to the second and stands by.
      await second.process.start();
      expect(await leads(second)).toBe(false);
      await first.process.stop("SIGTERM");
      await waitUntil(async () => (await leads(second)) === true, "the second leads again");
      await first.process.start();
      const duplicatesBefore = vendor.duplicates;
      const count = 20;
      const pTexts = Array.from({ length: count }, (_, i) => `p${String(i + 1).padStart(3, "0")}`);
      const qTexts = Array.from({ length: count }, (_, i) => `q${String(i + 1).padStart(3, "0")}`);
      const vendorSending = vendor.sendTexts("rep", "anna", pTexts, 150);
      const matrixSending = (async () => {
        for (const body of qTexts) {
          await client.sendMessage(roomId, { msgtype: MsgType.Text, body });
          await new Promise((r) => setTimeout(r, 150));
        }
      })();
      await vendor.delivered(
        () => vendor.texts(/^q\d{3}$/).length >= 3,
        "some Matrix messages at the vendor",
      );

      second.process.signal("SIGSTOP");
      const paused = Date.now();
      // A leader paused inside a row's transaction holds the lease row's share lock: the takeover
      // then waits for its resumption (docs/replicas.md). So it is resumed after 15 s at the latest.
      await waitUntil(async () => (await leads(first)) === true, "the standby took over", 15_000).catch(
        () => undefined,
      );
      const takeover = (Date.now() - paused) / 1000;
      await new Promise((r) => setTimeout(r, 2000)); // the new leader carries rows meanwhile
      second.process.signal("SIGCONT");
      await waitUntil(async () => (await leads(second)) === false, "the resumed replica stands by");
      await waitUntil(async () => (await leads(first)) === true, "the first leads");
      await vendorSending;
      await matrixSending;
      await bothArrived(pTexts.at(-1), qTexts.at(-1));
      await new Promise((r) => setTimeout(r, 3000));

      expect(vendor.texts(/^q\d{3}$/)).toEqual(qTexts);
      const { concurrency } = loadConfigFile(BridgeConfigSchema, org().paths.bridgeConfig).interop!.delivery;
      expect(vendor.duplicates - duplicatesBefore, "repeats absorbed by the webhook").toBeLessThanOrEqual(
        concurrency,
      );
      const bodies = await roomBodies(client, roomId);
      expect(bodies.filter((b) => /^p\d{3}$/.test(b))).toEqual(pTexts);
      expect(bodies.filter((b) => b.startsWith("⚠ Not delivered"))).toEqual([]);
      expect((await encryptedEventsBy(roomId, ghost("anna"))).length, "Anna's events in Synapse").toBe(
        MESSAGES + count + 1,
      );
      expect(await storedDevice(ghost("anna"))).toBe(annaDevice);
      expect(await synapseDevices(ghost("anna"))).toEqual([annaDevice]);
      const last = await waitForRoomEvent(client, roomId, (e) => e.getContent().body === pTexts.at(-1), {
        description: "the last vendor message",
      });
      expect(last.isDecryptionFailure()).toBe(false);
      expect(last.getSenderKey(), "sent from the same device").toBe(senderKey);
      process.stdout.write(
        `replicas-bridge: the standby led ${JOB} ${takeover.toFixed(2)} s after its leader was paused; ` +
          `resumed 2 s later, the old leader stood by; ${String(count)} messages each way once\n`,
      );
    });
  });
}
