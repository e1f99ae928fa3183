import { afterAll, describe, expect, it } from "vitest";
import { createSynapseAdmin, type RunningService } from "@medmesh/common";
import type { RunningOrganisation } from "@medmesh/deploy";
import {
  startBigTestServer,
  type BigTestRecord,
} from "../../policy-module/src/identity/registries/big/test-server.ts";
import { useTestNetwork, waitForMembership, waitUntil, type TestUser } from "../harness/index.ts";

// A deactivated account loses its verification (docs/identity.md, "A deactivated account"), on
// every path that deactivates: the user's own request through the proxy, and Synapse's admin API
// called straight on Synapse (the console's deactivate uses the same). Synapse's module reports
// each (on_user_deactivation_status_changed); A revokes at once, releases the number, and the
// badge A's clinician has in a room homed on B turns unverified (the revocation notice).

const record = (number: string, initials: string, surname: string): BigTestRecord => ({
  number,
  initials,
  surname,
  mailingName: `${initials} ${surname}`,
  professionCode: "01",
});
const ANN = record("19012345601", "A.", "Vermeulen");
const CARL = record("29012345602", "C.", "Karsten");

const big = await startBigTestServer([ANN, CARL]);
afterAll(() => big.stop());
const net = useTestNetwork({
  name: "deactivation",
  organisations: 2,
  organisationSettings: { 0: { require_id_document: false } },
  verifiedClinicians: { 1: [{ localpart: "bea", display_name: "Bea", profession: "physician" }] },
  identity: {
    registries: { big: { url: big.url, timeout_ms: 1500 } },
    remote_check_seconds: 1,
    revocation: { initial_backoff_seconds: 0.5, max_backoff_seconds: 2 },
  },
});
const org = (i: number): RunningOrganisation => net().orgs[i]!;
const pm = (o: RunningOrganisation): RunningService => o.services.find((s) => s.name === "policy-module")!;

const call = async (user: TestUser, method: string, path: string, body?: unknown) => {
  const res = await fetch(`${user.org.clientUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${user.accessToken}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};
const verify = (u: TestUser, r: BigTestRecord) =>
  call(u, "POST", "/_medmesh/identity/v1/verification", {
    registry: "BIG",
    number: r.number,
    claimed_name: `${r.initials} ${r.surname}`,
  });
const statusOf = async (userId: string) =>
  (await pm(org(0)).store.knex("clinician_verifications").where({ user_id: userId }).first()) as
    { status: string; reason: string | null } | undefined;
const releases = async (userId: string) =>
  (
    (await pm(org(0))
      .store.knex("audit_log")
      .where({ action: "identity.release", object: userId })
      .orderBy("seq")) as { actor: string; details: Record<string, unknown> | string }[]
  ).map((r) =>
    typeof r.details === "string" ? (JSON.parse(r.details) as Record<string, unknown>) : r.details,
  );
const badgeOf = async (reader: TestUser, roomId: string, userId: string) => {
  const key = encodeURIComponent(`user:${userId}`);
  const res = await call(
    reader,
    "GET",
    `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/org.medmesh.verification/${key}`,
  );
  return res.status === 200 ? res.body : undefined;
};

describe("a deactivated account", () => {
  it("loses its verification at once when it deactivates itself, also in the badge B shows; its number is free again", async () => {
    const [ann, bea] = await Promise.all([
      net().registerUser(org(0), "ann"),
      net().registerUser(org(1), "bea"),
    ]);
    expect((await verify(ann, ANN)).body).toMatchObject({ status: "verified" });
    // A room homed on B (B's bot administers it) with Ann, badged verified.
    const [beaClient, annClient] = await Promise.all([net().client(bea), net().client(ann)]);
    const { room_id: roomId } = await beaClient.createRoom({ invite: [ann.userId] });
    await waitForMembership(annClient, roomId, "invite", { description: "the invite to B's room" });
    await annClient.joinRoom(roomId);
    await waitUntil(
      async () => (await badgeOf(bea, roomId, ann.userId))?.verified === true,
      "Ann badged on B",
    );
    annClient.stopClient();

    // Ann's own request through A's proxy (user-interactive auth with her password).
    const auth = {
      type: "m.login.password",
      identifier: { type: "m.id.user", user: ann.userId },
      password: ann.password,
    };
    const first = await call(ann, "POST", "/_matrix/client/v3/account/deactivate", { erase: false });
    expect(first.status).toBe(401);
    const done = await call(ann, "POST", "/_matrix/client/v3/account/deactivate", {
      auth: { ...auth, session: first.body.session },
      erase: false,
    });
    expect(done.status).toBe(200);

    await waitUntil(
      async () => (await statusOf(ann.userId))?.status === "revoked",
      "Ann's verification revoked",
    );
    expect((await statusOf(ann.userId))?.reason).toMatch(/deactivated/);
    expect(await releases(ann.userId)).toEqual([
      expect.objectContaining({ cause: "account_deactivated", by_admin: false }),
    ]);
    // B's copy: the notice reaches B and its bot rewrites the badge.
    await waitUntil(
      async () => (await badgeOf(bea, roomId, ann.userId))?.verified === false,
      "Ann's badge on B unverified",
      60_000,
    );
    // The number goes to whoever claims it next (a new account of the same person).
    const ann2 = await net().registerUser(org(0), "ann2");
    expect((await verify(ann2, ANN)).body).toMatchObject({ status: "verified" });
  });

  it("loses its verification when a server admin deactivates it on Synapse's admin API, once", async () => {
    const carl = await net().registerUser(org(0), "carl");
    expect((await verify(carl, CARL)).body).toMatchObject({ status: "verified" });
    // Straight on Synapse (not through MedMesh's proxy), as a server admin.
    const synapse = createSynapseAdmin({
      url: org(0).synapseUrl,
      registrationSharedSecret: org(0).registrationSecret,
    });
    const deactivate = () =>
      synapse.request("POST", `/_synapse/admin/v1/deactivate/${encodeURIComponent(carl.userId)}`, {
        erase: false,
      });
    await deactivate();
    await waitUntil(
      async () => (await statusOf(carl.userId))?.status === "revoked",
      "Carl's verification revoked",
    );
    expect(await releases(carl.userId)).toEqual([
      expect.objectContaining({ cause: "account_deactivated", by_admin: true }),
    ]);
    // Deactivating again reports again; the record holds no number any more, nothing changes.
    await deactivate();
    await new Promise((r) => setTimeout(r, 1000));
    expect(await releases(carl.userId)).toHaveLength(1);
  });
});
