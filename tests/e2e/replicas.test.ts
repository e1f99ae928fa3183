import { readFileSync } from "node:fs";
import { createAuditLog, createStore, type Store } from "@medmesh/common";
import type { RunningOrganisation } from "@medmesh/deploy";
import { afterAll, describe, expect, it } from "vitest";
import {
  startBigTestServer,
  type BigTestRecord,
} from "../../policy-module/src/identity/registries/big/test-server.ts";
import { REVERIFY_JOB } from "../../policy-module/src/identity/reverify.ts";
import { SWEEP_JOB } from "../../policy-module/src/retention/index.ts";
import {
  useTestNetwork,
  waitUntil,
  withSynapseDb,
  type TestUser,
  postgresForSuite,
} from "../harness/index.ts";
import { leads as leadsJob, policyModuleReplica, type ReplicaProcess } from "../harness/replica-process.ts";

// Replicas (docs/replicas.md): two policy-module processes on one PostgreSQL store. The singleton
// jobs run on the elected leader; the leader is killed with SIGKILL in the middle of a retention
// sweep and of a re-verification run, and the standby finishes each — every item handled once,
// as the audit log and Synapse's own database say. Both refuse a revoked clinician at once.
const postgresUrl = postgresForSuite("replicas");
const LEASE_SECONDS = 3;
/** Expired messages of the sweep; small batches keep it going long enough to be killed mid-way. */
const MESSAGES = 60;
const BATCH = 5;
const CLINICIANS = 8;
/** The registry answers after this long: with one check at a time the run takes seconds. */
const REGISTRY_DELAY_MS = 400;

const clinician = (i: number): BigTestRecord => ({
  number: `${String(i)}90123456${String(i).padStart(2, "0")}`,
  initials: "R.",
  surname: `Replica${String(i)}`,
  mailingName: `R. Replica${String(i)}`,
  professionCode: "01",
});
const RECORDS = Array.from({ length: CLINICIANS }, (_, i) => clinician(i + 1));

if (postgresUrl) {
  const big = await startBigTestServer(RECORDS, { delayMs: REGISTRY_DELAY_MS });
  afterAll(() => big.stop());
  const net = useTestNetwork({
    name: "replicas",
    organisations: 1,
    postgresUrl,
    organisationSettings: { 0: { require_id_document: false } },
    identity: {
      registries: { big: { url: big.url, timeout_ms: 5000 } },
      reverify: { schedule: "0 3 * * *", concurrency: 1, rate_per_second: 100 },
    },
  });
  const org = (): RunningOrganisation => net().orgs[0]!;

  type Replica = ReplicaProcess;
  const replica = (name: string, ownPorts: boolean): Promise<Replica> =>
    policyModuleReplica(org(), net().dataDir, name, {
      ownPorts,
      leaseSeconds: LEASE_SECONDS,
      tweak: (config) => {
        // A further replica never runs the E2EE bots: this file is about the other jobs (replicas-bots.test.ts).
        if (ownPorts) config.identity.bot = false;
        config.retention = { ...config.retention, batch_size: BATCH, allow_clock_override: true };
      },
    });
  const token = () => readFileSync(org().adminTokenFiles["policy-module"], "utf8").trim();
  const admin = async <T>(r: Replica, method: string, path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${r.internalUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token()}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${r.name} ${method} ${path}: ${String(res.status)} ${text}`);
    return JSON.parse(text) as T;
  };
  const leads = (r: Replica, job: string) => leadsJob(org(), r, job);
  const clientApi = async (user: TestUser, base: string, method: string, path: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${user.accessToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };
  const search = async (user: TestUser, base: string, term: string): Promise<string[]> =>
    (
      (await clientApi(user, base, "POST", "/_matrix/client/v3/user_directory/search", { search_term: term }))
        .body.results as { user_id: string }[]
    ).map((r) => r.user_id);

  /** Kills `victim` as soon as `inProgress` holds (polled closely), and measures how long until `heir` leads `job`. */
  const killLeaderDuring = async (
    victim: Replica,
    heir: Replica,
    job: string,
    inProgress: () => Promise<boolean>,
  ): Promise<number> => {
    const deadline = Date.now() + 60_000;
    while (!(await inProgress())) {
      if (Date.now() > deadline)
        throw new Error(`timed out waiting until the ${job} run is under way on ${victim.name}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await victim.process.kill();
    const killed = Date.now();
    await waitUntil(async () => (await leads(heir, job)) === true, `${heir.name} took over ${job}`, 30_000);
    return (Date.now() - killed) / 1000;
  };

  describe("policy-module replicas on one store", () => {
    let store: Store;
    let first: Replica;
    let second: Replica;
    afterAll(async () => {
      await first.process.stop("SIGTERM");
      await second.process.stop("SIGTERM");
      await store.close();
    });
    const audited = (action: string) => createAuditLog(store.knex).find({ action });

    it("elects one leader per singleton job; the other replica stands by", async () => {
      await org()
        .services.find((s) => s.name === "policy-module")
        ?.stop();
      store = await createStore(org().policyModule.store);
      first = await replica("first", false);
      second = await replica("second", true);
      await first.process.start();
      await second.process.start();
      for (const job of [SWEEP_JOB, REVERIFY_JOB]) {
        expect(await leads(first, job), `first leads ${job}`).toBe(true);
        expect(await leads(second, job), `second stands by for ${job}`).toBe(false);
      }
      // The standby's sweep does not run.
      expect(await admin(second, "POST", "/_medmesh/admin/v1/retention/sweep", {})).toMatchObject({
        ran: false,
      });
    });

    it("kill -9 of the leader during a retention sweep: the standby finishes it, each event redacted and audited once", async () => {
      const alice = await net().registerUser(org(), "alice");
      const { body } = await clientApi(alice, first.clientUrl, "POST", "/_matrix/client/v3/createRoom", {
        name: "Ward 7",
      });
      const roomId = String(body.room_id);
      const bot = `@medmesh:${org().serverName}`;
      const members = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/joined_members`;
      await waitUntil(
        async () =>
          Object.keys(
            ((await clientApi(alice, org().synapseUrl, "GET", members)).body.joined ?? {}) as Record<
              string,
              unknown
            >,
          ).includes(bot),
        "the room-admin bot joined",
      );
      const say = async (txn: string, body: string): Promise<string> =>
        String(
          (
            await clientApi(
              alice,
              org().synapseUrl,
              "PUT",
              `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/${txn}`,
              { msgtype: "m.text", body },
            )
          ).body.event_id,
        );
      // A kept (pinned) first message: the sweep purges Synapse's history only up to it, so
      // Synapse's own record of every redaction stays to be counted.
      const kept = await say("kept", "the care plan");
      await clientApi(
        alice,
        org().synapseUrl,
        "PUT",
        `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.pinned_events/`,
        { pinned: [kept] },
      );
      await waitUntil(
        async () => (await store.knex("retention_keeps").where({ event_id: kept }).first()) !== undefined,
        "the pin is a keep",
      );
      const sent: string[] = [];
      for (let i = 0; i < MESSAGES; i++) {
        sent.push(await say(`r${String(i)}`, `message ${String(i)}`));
      }
      const indexedOf = () =>
        store.knex("retention_events").whereIn("event_id", sent).count<{ n: string }[]>({ n: "*" });
      const marked = async () =>
        Number(
          (
            await store
              .knex("retention_events")
              .whereIn("event_id", sent)
              .whereNotNull("redacted_at")
              .count<{ n: string }[]>({ n: "*" })
          )[0]?.n,
        );
      await waitUntil(async () => Number((await indexedOf())[0]?.n) === MESSAGES, "every message is indexed");

      // The leader sweeps as if 40 days had passed; it is killed once its first batch is recorded.
      const now = new Date(Date.now() + 40 * 86_400_000).toISOString();
      void admin(first, "POST", "/_medmesh/admin/v1/retention/sweep", { now }).catch(() => undefined);
      const takeover = await killLeaderDuring(
        first,
        second,
        SWEEP_JOB,
        async () => (await marked()) >= BATCH,
      );
      const atKill = await marked();
      expect(atKill, "the sweep was in progress when its leader died").toBeLessThan(MESSAGES);
      await waitUntil(async () => (await marked()) === MESSAGES, "the standby finished the sweep", 120_000);
      await waitUntil(
        async () =>
          (JSON.parse((await store.documents.get(SWEEP_JOB)) ?? "{}") as { finished?: boolean }).finished ===
          true,
        "the sweep's run is recorded finished",
        60_000,
      );

      // The audit log: each event once, in one of the two leaders' batches.
      const ids = (await audited("retention.redact"))
        .filter((r) => r.object === roomId)
        .flatMap((r) => r.details.event_ids as string[]);
      expect(ids.length, "audited event IDs (with repeats)").toBe(MESSAGES);
      expect([...ids].sort()).toEqual([...sent].sort());
      // Synapse: one redaction per event, none missed, none twice.
      const redactions = await withSynapseDb(org(), (db) =>
        db.all<{ redacts: string; n: number | string }>(
          "SELECT redacts, count(*) AS n FROM redactions GROUP BY redacts",
        ),
      );
      const count = new Map(redactions.map((r) => [r.redacts, Number(r.n)]));
      expect(count.has(kept), "the kept message is not redacted").toBe(false);
      expect(
        sent.filter((id) => count.get(id) !== 1),
        "events not redacted exactly once",
      ).toEqual([]);
      process.stdout.write(
        `replicas: sweep of ${String(MESSAGES)} events, leader killed after ${String(atKill)}; standby led after ${takeover.toFixed(2)} s (lease ${String(LEASE_SECONDS)} s)\n`,
      );
      expect(takeover).toBeLessThanOrEqual(LEASE_SECONDS * (4 / 3) + 3);
      // The killed replica comes back (as a supervisor restarts it) as the standby.
      await first.process.start();
      expect(await leads(first, SWEEP_JOB)).toBe(false);
    });

    it("kill -9 of the leader during re-verification: the standby finishes the run, each clinician checked and audited once", async () => {
      const users: TestUser[] = [];
      for (const [i, r] of RECORDS.entries()) {
        const u = await net().registerUser(org(), `clinician${String(i + 1)}`);
        const res = await clientApi(u, second.clientUrl, "POST", "/_medmesh/identity/v1/verification", {
          registry: "BIG",
          number: r.number,
          claimed_name: `${r.initials} ${r.surname}`,
        });
        expect(res.body).toMatchObject({ status: "verified" });
        users.push(u);
      }
      // Struck off since: this run revokes the first clinician.
      big.setRecords([{ ...RECORDS[0]!, registrationEnd: "2026-01-01" }, ...RECORDS.slice(1)]);
      const before = (await audited("identity.reverify")).length;
      // The leader now is the second replica (it took over every job when the first was killed).
      expect(await leads(second, REVERIFY_JOB)).toBe(true);
      void admin(second, "POST", "/_medmesh/admin/v1/identity/reverify").catch(() => undefined);
      const runChecks = async () => {
        const run = JSON.parse((await store.documents.get(REVERIFY_JOB)) ?? "{}") as { id?: string };
        return (await audited("identity.reverify")).slice(before).filter((r) => r.details.run === run.id);
      };
      const takeover = await killLeaderDuring(
        second,
        first,
        REVERIFY_JOB,
        async () => (await runChecks()).length >= 2,
      );
      const atKill = (await runChecks()).length;
      expect(atKill, "the run was in progress when its leader died").toBeLessThan(CLINICIANS);
      await waitUntil(
        async () =>
          (JSON.parse((await store.documents.get(REVERIFY_JOB)) ?? "{}") as { finished?: boolean })
            .finished === true,
        "the standby finished the re-verification run",
        60_000,
      );
      const checks = await runChecks();
      expect(checks.map((r) => r.object).sort(), "each clinician checked once in the run").toEqual(
        users.map((u) => u.userId).sort(),
      );
      expect(checks.find((r) => r.object === users[0]!.userId)?.outcome).toBe("revoked");
      expect(checks.filter((r) => r.outcome === "verified")).toHaveLength(CLINICIANS - 1);
      // The revocation itself: audited once.
      const revoked = (await audited("identity.check")).filter(
        (r) => r.object === users[0]!.userId && r.outcome === "revoked",
      );
      expect(revoked).toHaveLength(1);
      process.stdout.write(
        `replicas: re-verification of ${String(CLINICIANS)} clinicians, leader killed after ${String(atKill)}; standby led after ${takeover.toFixed(2)} s\n`,
      );
      expect(takeover).toBeLessThanOrEqual(LEASE_SECONDS * (4 / 3) + 3);
      await second.process.start();

      // Both replicas refuse a clinician revoked now, at once (the store's notification).
      expect(await search(users[2]!, second.clientUrl, "replica2")).toEqual([users[1]!.userId]);
      big.setRecords([
        { ...RECORDS[0]!, registrationEnd: "2026-01-01" },
        { ...RECORDS[1]!, registrationEnd: "2026-01-01" },
        ...RECORDS.slice(2),
      ]);
      expect(await leads(first, REVERIFY_JOB)).toBe(true);
      expect(await admin(first, "POST", "/_medmesh/admin/v1/identity/reverify")).toMatchObject({
        revoked: 1,
      });
      const started = Date.now();
      for (const r of [first, second]) {
        await waitUntil(
          async () => (await search(users[1]!, r.clientUrl, "replica")).length === 0,
          `${r.name} serves the revoked clinician no directory`,
          2000,
        );
        await waitUntil(
          async () => !(await search(users[2]!, r.clientUrl, "replica2")).includes(users[1]!.userId),
          `${r.name} no longer lists the revoked clinician`,
          2000,
        );
        // A clinician still verified is served, and finds the others still verified.
        expect(await search(users[3]!, r.clientUrl, "replica3")).toEqual([users[2]!.userId]);
      }
      process.stdout.write(
        `replicas: both refused the revoked clinician within ${String(Date.now() - started)} ms\n`,
      );
    });
  });
}
