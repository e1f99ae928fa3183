import { readFileSync } from "node:fs";
import { createStore, registerWithSharedSecret, type Store } from "@medmesh/common";
import type { RunningOrganisation } from "@medmesh/deploy";
import type { MatrixClient } from "matrix-js-sdk";
import { RoomEvent } from "matrix-js-sdk";
import { afterAll, describe, expect, it } from "vitest";
import { BOTS_JOB } from "../../policy-module/src/bot/index.ts";
import {
  startBigTestServer,
  type BigTestRecord,
} from "../../policy-module/src/identity/registries/big/test-server.ts";
import { JPEG_WITH_GPS } from "../../policy-module/src/media/test-images.ts";
import {
  useTestNetwork,
  waitForRoomEvent,
  waitUntil,
  withSynapseDb,
  type TestUser,
  postgresForSuite,
} from "../harness/index.ts";
import { leads as leadsJob, policyModuleReplica, type ReplicaProcess } from "../harness/replica-process.ts";

// The policy module's E2EE bots on replicas (docs/replicas.md): two policy-module processes on one
// PostgreSQL store; the bots run on the leader of BOTS_JOB, the other replica receives Synapse's
// transactions (its URL is the one Synapse names) and records the bots' events in the store. A
// clinician talks to the verification bot; the bots' leader is killed with SIGKILL; the standby's
// bot — the same Matrix device, its crypto store restored — answers the next messages, which the
// clinician decrypts. Each message is answered once (Synapse's own events table says so).
const postgresUrl = postgresForSuite("replicas: bots");
const LEASE_SECONDS = 3;
const CARLA: BigTestRecord = {
  number: "39012345603",
  initials: "C.",
  surname: "Bakker",
  mailingName: "C. Bakker",
  professionCode: "01",
};

if (postgresUrl) {
  const big = await startBigTestServer([CARLA]);
  afterAll(() => big.stop());
  const net = useTestNetwork({
    name: "replicas-bots",
    organisations: 1,
    postgresUrl,
    identity: { registries: { big: { url: big.url, timeout_ms: 5000 } } },
  });
  const org = (): RunningOrganisation => net().orgs[0]!;
  const botOf = (): string => `@medmesh-verify:${org().serverName}`;

  type Replica = ReplicaProcess;
  // Both may run the bots (identity.bot: true, the default): the leader of BOTS_JOB does.
  const replica = (name: string, ownPorts: boolean): Promise<Replica> =>
    policyModuleReplica(org(), net().dataDir, name, { ownPorts, leaseSeconds: LEASE_SECONDS });
  const token = () => readFileSync(org().adminTokenFiles["policy-module"], "utf8").trim();
  const leads = (r: Replica, job: string) => leadsJob(org(), r, job);
  const clientApi = async (user: TestUser, base: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${user.accessToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  /** Each answer is waited for once: a later wait takes only a notice not seen before. */
  const seen = new Set<string>();
  /** The bot's next notice in a room matching `text`, decrypted by the reader's own client. */
  const botSays = async (client: MatrixClient, roomId: string, text: RegExp, timeoutMs = 60_000) => {
    const e = await waitForRoomEvent(
      client,
      roomId,
      (e) =>
        e.getSender() === botOf() && !seen.has(e.getId() ?? "") && text.test(String(e.getContent().body)),
      { description: `the bot saying ${String(text)}`, timeoutMs },
    );
    seen.add(e.getId() ?? "");
    return e;
  };
  const invitedRoom = (client: MatrixClient): Promise<string> =>
    new Promise<string>((resolve) => {
      client.on(RoomEvent.MyMembership, (room, membership) => {
        if (membership === "invite") resolve(room.roomId);
      });
      const invited = client.getRooms().find((r) => r.getMyMembership() === "invite");
      if (invited) resolve(invited.roomId);
    });
  /** What the bot sent in a room, as Synapse stored it (encrypted: counted, not read). */
  const botEventsIn = (roomId: string) =>
    withSynapseDb(org(), (db) =>
      db.all<{ event_id: string }>(
        "SELECT event_id FROM events WHERE room_id = ? AND sender = ? AND type = 'm.room.encrypted'",
        [roomId, botOf()],
      ),
    );
  const channelsApi = async (r: Replica, path: string, body?: unknown) => {
    const res = await fetch(`${r.internalUrl}/_medmesh/admin/v1/channels${path}`, {
      method: body === undefined ? "GET" : "POST",
      headers: { authorization: `Bearer ${token()}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const channelCount = async () => (await store.knex("channels").count<{ n: string }[]>({ n: "*" }))[0]?.n;
  const storedDevice = async (): Promise<string | undefined> =>
    (JSON.parse((await store.documents.get(`bot.device:${botOf()}`)) ?? "{}") as { device_id?: string })
      .device_id;

  let store: Store;
  let first: Replica;
  let second: Replica;
  let carla: TestUser;
  let carlaClient: MatrixClient;
  let dm: string;
  let adminUser: TestUser;
  let device: string | undefined;
  /** The curve25519 key of the device the bot's answers were encrypted by. */
  let senderKey: string | null = null;
  /** What Carla sent the bot (each must be answered once). */
  const sent: string[] = [];
  const say = async (body: string): Promise<void> => {
    sent.push((await carlaClient.sendTextMessage(dm, body)).event_id);
  };

  describe("the E2EE bots on replicas", () => {
    afterAll(async () => {
      await first.process.stop("SIGTERM");
      await second.process.stop("SIGTERM");
      await store.close();
    });

    it("run on the leader only; the standby records what they are sent, and queues what they must say, for the leader", async () => {
      await org()
        .services.find((s) => s.name === "policy-module")
        ?.stop();
      store = await createStore(org().policyModule.store);
      first = await replica("first", false);
      second = await replica("second", true);
      // The first starts first and leads; a clean stop (a rolling restart) hands the bots to the
      // second at once; started again, the first receives Synapse's transactions as a standby.
      await first.process.start();
      await second.process.start();
      expect(await leads(first, BOTS_JOB), "the first leads the bots").toBe(true);
      expect(await leads(second, BOTS_JOB), "the second stands by").toBe(false);
      await first.process.stop("SIGTERM");
      await waitUntil(async () => (await leads(second, BOTS_JOB)) === true, "the second took the bots over");
      await first.process.start();
      expect(await leads(first, BOTS_JOB), "the first stands by").toBe(false);

      carla = await net().registerUser(org(), "carla");
      carlaClient = await net().client(carla);
      dm = (await carlaClient.createRoom({ invite: [botOf()], is_direct: true })).room_id;
      await waitUntil(
        () => Promise.resolve(carlaClient.getRoom(dm)?.getMember(botOf())?.membership === "join"),
        "the bot joined Carla's direct chat",
      );
      await say("status");
      const answer = await botSays(carlaClient, dm, /You have not asked to be verified yet/);
      expect(answer.isEncrypted()).toBe(true);
      expect(answer.isDecryptionFailure()).toBe(false);
      device = await storedDevice();
      expect(device).toBeDefined();
      senderKey = answer.getSenderKey();
      expect(senderKey, "the bot's device key, as Carla's client decrypted with").toBeTruthy();
      // The event reached the standby (Synapse's URL) and was handled by the leader's bot from the
      // store (marked handled just after the answer went out).
      await waitUntil(async () => {
        const row: { handled_at: unknown } | undefined = await store
          .knex("bot_inbox")
          .where({ bot_user_id: botOf(), event_id: sent[0] })
          .first("handled_at");
        return row !== undefined && row.handled_at !== null;
      }, "the inbox row is marked handled");

      // A notice decided on the standby: Carla's ID document, uploaded there, waits for review;
      // the organisation's admin hears it from the bot, on the leader's device.
      const adminReg = await registerWithSharedSecret(org().synapseUrl, org().registrationSecret, {
        localpart: "bots-admin",
        password: "bots-admin-password-1",
        admin: true,
      });
      adminUser = { ...adminReg, localpart: "bots-admin", password: "", org: org() };
      const adminClient = await net().client(adminUser);
      expect(
        (
          await clientApi(carla, first.clientUrl, "POST", "/_medmesh/identity/v1/verification", {
            registry: "BIG",
            number: CARLA.number,
            claimed_name: "C. Bakker",
          })
        ).body,
      ).toMatchObject({ status: "awaiting_document" });
      const put = await fetch(`${first.clientUrl}/_medmesh/identity/v1/document`, {
        method: "PUT",
        headers: { authorization: `Bearer ${carla.accessToken}`, "content-type": "image/jpeg" },
        body: JPEG_WITH_GPS,
      });
      expect(put.status).toBe(200);
      const adminDm = await invitedRoom(adminClient);
      await adminClient.joinRoom(adminDm);
      await botSays(
        adminClient,
        adminDm,
        new RegExp(`${carla.userId} sent an ID document .* waits for your review`),
      );
      const queued: unknown[] = await store.knex("bot_outbox").where({ bot_user_id: botOf() }).select("seq");
      expect(queued, "the outbox is empty once sent").toEqual([]);
    });

    it("kill -9 of the bots' leader: the standby runs the same device and answers what came since, each once", async () => {
      await second.process.kill();
      const killed = Date.now();
      // Until its lease runs out the dead replica is still the bots' leader: what needs a bot's
      // device is refused (503, naming it), and nothing is stored.
      const refused = await channelsApi(first, "", { name: "Too early", publishers: [adminUser.userId] });
      expect(refused).toMatchObject({
        status: 503,
        body: { errcode: "M_UNAVAILABLE", error: expect.stringContaining(second.internalUrl) as unknown },
      });
      expect(await channelCount()).toBe("0");
      // Sent while no replica runs the bot: the standby records it; its bot answers once elected.
      await say("help");
      await botSays(carlaClient, dm, /^I am the MedMesh bot/, 90_000);
      const answered = (Date.now() - killed) / 1000;
      expect(await leads(first, BOTS_JOB), "the first leads the bots now").toBe(true);
      await say("status");
      const answer = await botSays(carlaClient, dm, /with your organisation's admin for review/);
      expect(answer.isEncrypted()).toBe(true);
      expect(answer.isDecryptionFailure()).toBe(false);
      expect(answer.getSenderKey(), "encrypted by the same device (its keys restored)").toBe(senderKey);

      // The same device: in the store, and the bot's only device on Synapse.
      expect(await storedDevice()).toBe(device);
      const devices = await fetch(
        `${org().synapseUrl}/_synapse/admin/v2/users/${encodeURIComponent(botOf())}/devices`,
        { headers: { authorization: `Bearer ${adminUser.accessToken}` } },
      ).then((r) => r.json() as Promise<{ devices: { device_id: string }[] }>);
      expect(devices.devices.map((x) => x.device_id)).toEqual([device]);

      // The admin approves (on the new leader); Carla is told, once.
      const approved = await clientApi(
        adminUser,
        first.clientUrl,
        "POST",
        `/_medmesh/admin/v1/identity/reviews/${encodeURIComponent(carla.userId)}`,
        { decision: "approve" },
      );
      expect(approved.body).toMatchObject({ status: "verified" });
      await botSays(carlaClient, dm, /You are verified as physician/);

      // Each of Carla's messages answered once, and the approval told once: nothing handled twice.
      await new Promise((r) => setTimeout(r, 3000));
      expect((await botEventsIn(dm)).length, "the bot's messages in Carla's chat").toBe(sent.length + 1);
      const rows: { event_id: string; handled_at: unknown }[] = await store
        .knex("bot_inbox")
        .where({ bot_user_id: botOf() })
        .whereIn("event_id", sent)
        .select("event_id", "handled_at");
      expect(rows.map((r) => r.event_id).sort()).toEqual([...sent].sort());
      expect(rows.filter((r) => r.handled_at === null)).toEqual([]);
      process.stdout.write(
        `replicas-bots: the standby's bot answered ${answered.toFixed(2)} s after the kill -9 of the bots' leader (lease ${String(LEASE_SECONDS)} s), device ${String(device)}\n`,
      );

      // The killed replica comes back as the standby; the bot stays where it is.
      await second.process.start();
      expect(await leads(second, BOTS_JOB)).toBe(false);
      await say("status");
      await botSays(carlaClient, dm, /You are verified as physician/);
      expect(await storedDevice()).toBe(device);
    });

    it("a channel made, posted to and counted through the standby: the bots' replica does it, once", async () => {
      const channelBot = `@medmesh-channels:${org().serverName}`;
      expect(await leads(second, BOTS_JOB), "the second is the standby").toBe(false);
      const spec = { name: "Ward news", publishers: [adminUser.userId] };
      const created = await channelsApi(second, "", spec);
      expect(created.status).toBe(201);
      expect(created.body).toMatchObject({ name: "Ward news", created_by: "admin-token" });
      expect(Date.parse(String(created.body.created_at))).toBeGreaterThan(Date.now() - 120_000);
      const roomId = String(created.body.room_id);
      expect(await channelCount()).toBe("1");
      const posted = await channelsApi(second, `/${encodeURIComponent(roomId)}/posts`, { body: "hello" });
      expect(posted.status).toBe(200);
      expect(await store.knex("channel_posts").count<{ n: string }[]>({ n: "*" })).toEqual([{ n: "1" }]);
      const stats = await channelsApi(
        second,
        `/${encodeURIComponent(roomId)}/posts/${encodeURIComponent(String(posted.body.event_id))}`,
      );
      expect(stats.status).toBe(200);
      expect(stats.body).toMatchObject({ event_id: posted.body.event_id });
      // Bad input is refused by the leader, and the standby's caller gets its answer.
      expect(await channelsApi(second, "", { name: "No publishers", publishers: [] })).toMatchObject({
        status: 400,
        body: { errcode: "M_INVALID_PARAM" },
      });
      expect(await channelCount()).toBe("1");
      // One device of the channel bot, run by the bots' leader only.
      const devices = await fetch(
        `${org().synapseUrl}/_synapse/admin/v2/users/${encodeURIComponent(channelBot)}/devices`,
        { headers: { authorization: `Bearer ${adminUser.accessToken}` } },
      ).then((r) => r.json() as Promise<{ devices: { device_id: string }[] }>);
      expect(devices.devices).toHaveLength(1);
    });

    it("a department made and ended on the standby: the leader starts its account (one device) and ends it", async () => {
      const deptUser = `@medmesh-dept-cardio:${org().serverName}`;
      const departmentsApi = async (r: Replica, method: string, body?: unknown) => {
        const res = await fetch(`${r.internalUrl}/_medmesh/admin/v1/departments/cardio`, {
          method,
          headers: { authorization: `Bearer ${token()}`, "content-type": "application/json" },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        return { status: res.status, body: (await res.json()) as Record<string, unknown> };
      };
      const now = Date.now();
      const made = await departmentsApi(second, "PUT", {
        name: "Cardiology",
        members: [carla.userId],
        rota: [
          {
            from: new Date(now - 3_600_000).toISOString(),
            until: new Date(now + 86_400_000).toISOString(),
            on_duty: [carla.userId],
          },
        ],
      });
      expect(made.status).toBe(201);
      // Announced to the leader, which starts the account (only the leader can write its device).
      await waitUntil(
        async () =>
          (JSON.parse((await store.documents.get(`bot.device:${deptUser}`)) ?? "{}") as { crypto?: unknown })
            .crypto != null,
        "the leader started the department's account",
        30_000,
      );
      const devices = await fetch(
        `${org().synapseUrl}/_synapse/admin/v2/users/${encodeURIComponent(deptUser)}/devices`,
        { headers: { authorization: `Bearer ${adminUser.accessToken}` } },
      ).then((r) => r.json() as Promise<{ devices: unknown[] }>);
      expect(devices.devices).toHaveLength(1);

      const row = (): Promise<{ retired_at: unknown } | undefined> =>
        store.knex("departments").where({ id: "cardio" }).first("retired_at");
      // Ended through the standby: the leader, which runs the account, ends it.
      expect((await departmentsApi(second, "DELETE")).status).toBe(200);
      expect((await row())?.retired_at).not.toBeNull();
    });
  });
}
