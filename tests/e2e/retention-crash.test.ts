import { createStore } from "@medmesh/common";
import type { MatrixClient } from "matrix-js-sdk";
import { afterAll, describe, expect, it } from "vitest";
import { adminApi, useTestNetwork, waitUntil, withSynapseDb, type TestUser } from "../harness/index.ts";
import { answers, killRepeatedly, serviceProcess } from "../harness/service-process.ts";

// The appservice frame's catch-up, for the policy module: its appservice role is killed with
// SIGKILL in the middle of a burst and started again (as a supervisor would), and every message
// must still reach the retention index — including one Synapse holds back until its next failure
// (synapse/appservice/scheduler.py), which only the catch-up finds in time. One such hold-back is
// forced deterministically, through Synapse's own record of the service's state.
const BURST = Number(process.env.MEDMESH_RETENTION_CRASH_BURST ?? 400);
const KILLS = Number(process.env.MEDMESH_RETENTION_CRASH_KILLS ?? 10);
const SENDERS = Number(process.env.MEDMESH_RETENTION_CRASH_SENDERS ?? 4);

const postgresUrl = process.env.MEDMESH_TEST_POSTGRES_URL;
const net = useTestNetwork({
  name: "retention-crash",
  organisations: 1,
  ...(postgresUrl ? { postgresUrl } : {}),
});
const org = () => net().orgs[0]!;
const admin = () => adminApi(org(), "policy-module");

/** Catch-ups counted by the processes killed so far (a killed process takes its metrics along). */
let catchUpsBefore = 0;
let foundMissingBefore = 0;
const policyModule = serviceProcess({
  service: "policy-module",
  config: () => org().paths.policyModuleConfig,
  dataDir: () => net().dataDir,
  // /health answers before the roles run: the proxy is the last to listen.
  ready: async () =>
    (await answers(`${admin().url}/health`)) && answers(`${org().clientUrl}/_matrix/client/versions`),
  readyTimeoutMs: 90_000,
});
const startPolicyModule = policyModule.start;
const stop = policyModule.stop;

/** Catch-ups this process counted (with `outcome`: those with that outcome). */
async function catchUps(outcome = ""): Promise<number> {
  const metrics = await admin().metrics();
  return [...metrics.matchAll(/^medmesh_appservice_catch_ups_total\{([^}]*)\} (\d+)/gm)]
    .filter((m) => m[1]?.includes(`outcome="${outcome}`))
    .reduce((n, m) => n + Number(m[2]), 0);
}

afterAll(() => stop("SIGKILL"));

async function kill(): Promise<void> {
  catchUpsBefore += await catchUps().catch(() => 0);
  foundMissingBefore += await catchUps("found_missing").catch(() => 0);
  await stop("SIGKILL");
}

const asId = () => org().services.find((s) => s.name === "policy-module")?.registration.id ?? "";
/** Transactions Synapse stored for the policy module and has not sent: held back (event IDs each). */
const heldBack = (): Promise<string[]> =>
  withSynapseDb(org(), async (db) =>
    (
      await db.all<{ event_ids: string }>("SELECT event_ids FROM application_services_txns WHERE as_id = ?", [
        asId(),
      ])
    ).map((r) => r.event_ids),
  );
/** The state Synapse's scheduler reads before it sends a transaction (`_is_service_up`). */
const appserviceState = (): Promise<string | undefined> =>
  withSynapseDb(
    org(),
    async (db) =>
      (
        await db.all<{ state: string }>("SELECT state FROM application_services_state WHERE as_id = ?", [
          asId(),
        ])
      )[0]?.state,
  );
const setAppserviceState = (state: "up" | "down") =>
  withSynapseDb(org(), (db) =>
    db.run("UPDATE application_services_state SET state = ? WHERE as_id = ?", [state, asId()]),
  );

const indexed = async () =>
  (await admin().json<{ indexed: number }>("GET", "/_medmesh/admin/v1/retention/status")).indexed;

describe(`retention index crash safety: kill -9 ×${String(KILLS)} during a ${String(BURST)}-message burst`, () => {
  let alice: TestUser;
  let client: MatrixClient;
  let roomId: string;
  const sent: string[] = [];
  let txn = 0;
  /** A message straight to Synapse (the policy proxy is down whenever the policy module is). */
  const say = async (text: string): Promise<string> => {
    for (;;) {
      const res = await fetch(
        `${org().synapseUrl}/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/m.room.message/t${String(++txn)}`,
        {
          method: "PUT",
          headers: { authorization: `Bearer ${alice.accessToken}`, "content-type": "application/json" },
          body: JSON.stringify({ msgtype: "m.text", body: text }),
        },
      ).catch(() => undefined);
      const body = (await res?.json().catch(() => ({}))) as { event_id?: string } | undefined;
      if (body?.event_id) {
        sent.push(body.event_id);
        return body.event_id;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  let baseline = 0;
  const allIndexed = (description: string, timeoutMs = 60_000) =>
    waitUntil(async () => (await indexed()) >= baseline + sent.length, description, timeoutMs);

  it("sets up a room with the room-admin bot, the policy module as its own process", async () => {
    await org()
      .services.find((s) => s.name === "policy-module")
      ?.stop();
    await startPolicyModule();
    alice = await net().registerUser(org(), "alice");
    client = await net().client(alice);
    ({ room_id: roomId } = await client.createRoom({ name: "Ward 3" }));
    const bot = `@medmesh:${org().serverName}`;
    await waitUntil(
      async () => (await client.getJoinedRoomMembers(roomId)).joined[bot],
      "the room-admin bot joined",
    );
    baseline = await indexed();
    await say("hello");
    await allIndexed("hello is indexed");
  });

  it("looks for held-back Synapse transactions only after a recovery", async () => {
    await say("r1");
    await allIndexed("r1 is indexed");
    expect(await catchUps(), "after a start with nothing stored at Synapse").toBe(0);
    await kill();
    await say("r2"); // Synapse stores it, and sends it again once the policy module is back
    await startPolicyModule();
    await say("r3");
    // r3 may be held back by Synapse as its recovery ends: the next message brings the catch-up.
    await say("r4");
    await allIndexed("r2, r3 and r4 are indexed", 120_000);
    expect(await catchUps(), "after Synapse recovered the transaction it stored").toBeGreaterThan(0);
  });

  it("a transaction Synapse holds back reaches the retention index", async () => {
    // The race always follows a recovery: the policy module down while Synapse had a message for it.
    await kill();
    await say("h1");
    await startPolicyModule();
    await allIndexed("h1 is indexed after the recovery");
    await waitUntil(
      async () => (await appserviceState()) === "up" && (await heldBack()).length === 0,
      "Synapse's recovery of the policy module ended",
    );
    // What Synapse's scheduler reads when a transaction is created as the recovery ends: the service
    // still down, and no recoverer left to send it. Synapse stores it and sends it at its next failure.
    await setAppserviceState("down");
    const held = await say("held back");
    await waitUntil(
      async () => (await heldBack()).some((ids) => ids.includes(held)),
      "Synapse stored the transaction and did not send it",
    );
    await setAppserviceState("up");
    await say("after");
    // Every message so far, by count (the last test reads each event ID from the index).
    await allIndexed("the held-back message is indexed (found by the catch-up)");
    expect(
      (await heldBack()).some((ids) => ids.includes(held)),
      "Synapse still holds the transaction back: the catch-up, not Synapse, brought it",
    ).toBe(true);
    expect(await catchUps("found_missing"), "catch-ups that found a missing event").toBeGreaterThan(0);
  });

  it("every message reaches the retention index", async () => {
    // This test's catch-ups only.
    catchUpsBefore = -(await catchUps());
    foundMissingBefore = -(await catchUps("found_missing"));
    let killing = true;
    // Several senders, so transactions keep coming while Synapse finishes each recovery.
    const sender = async (name: string) => {
      for (let i = 0; killing || i < BURST / SENDERS; i++) {
        await say(`${name}${String(i)}`);
      }
    };
    const sending = Promise.all(Array.from({ length: SENDERS }, (_, i) => sender(`s${String(i)}-`)));
    await killRepeatedly(KILLS, { kill, start: startPolicyModule });
    killing = false;
    await sending;
    // A last message after the last recovery: a transaction Synapse still holds back is found
    // from it (and would otherwise wait for Synapse's next failure).
    await say("last");
    await allIndexed(`all ${String(sent.length)} messages are indexed`, 180_000).catch(
      async (err: unknown) => {
        throw new Error(
          `${(err as Error).message}; transactions held back at Synapse: ${String((await heldBack()).length)}`,
        );
      },
    );
    // A transaction Synapse still holds back is one the catch-up made up for.
    const held = (await heldBack()).length;
    const total = catchUpsBefore + (await catchUps());
    const found = foundMissingBefore + (await catchUps("found_missing"));
    expect(total, "catch-ups counted across the restarts").toBeGreaterThan(0);
    await stop("SIGTERM");
    // Every event ID, not just the count: read the index itself.
    const store = await createStore(org().policyModule.store);
    try {
      const ids = await store.knex("retention_events").where({ room_id: roomId }).pluck<string[]>("event_id");
      const missing = sent.filter((id) => !ids.includes(id));
      expect(missing, "messages missing from retention_events").toEqual([]);
      process.stdout.write(
        `retention index: ${String(sent.length)} messages, ${String(KILLS)} kills, ${String(total)} catch-ups, ${String(found)} of them found events Synapse had not sent yet, ${String(held)} transactions held back at Synapse\n`,
      );
    } finally {
      await store.close();
    }
  }, 600_000);
});
