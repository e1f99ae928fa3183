import { afterAll, describe, expect, it } from "vitest";
import type { MatrixClient } from "matrix-js-sdk";
import type { RunningOrganisation } from "@medmesh/deploy";
import {
  startBigTestServer,
  type BigTestRecord,
} from "../../policy-module/src/identity/registries/big-test-server.ts";
import { registerWithSharedSecret } from "@medmesh/common";
import { JPEG_WITH_GPS } from "../../policy-module/src/media/test-images.ts";
import { useTestNetwork, waitForMembership, type TestUser } from "../harness/index.ts";

// A BIG-register test server speaking the CIBG SOAP contract; both organisations check against it.
const ANN: BigTestRecord = {
  number: "19012345601",
  initials: "A.",
  prefix: "de",
  surname: "Vries",
  mailingName: "A. de Vries",
  professionCode: "01",
};
const BRAM: BigTestRecord = {
  number: "29012345602",
  initials: "B.",
  surname: "Jansen",
  mailingName: "B. Jansen",
  professionCode: "30",
};
const big = await startBigTestServer([ANN, BRAM]);
afterAll(() => big.stop());

const net = useTestNetwork({
  name: "identity",
  organisations: 2,
  identity: {
    registries: { big: { url: big.url, timeout_ms: 1500 } },
    remote_refresh_seconds: 2,
    reverify: { schedule: "0 3 * * *", concurrency: 4, rate_per_second: 100 },
    id_document: { max_bytes: 64 * 1024 },
  },
  // GP circle B wants an ID document reviewed before a first verification.
  organisationSettings: { 1: { require_id_document: true } },
});

const org = (i: number): RunningOrganisation => net().orgs[i]!;
const policy = (o: RunningOrganisation) => o.services.find((s) => s.name === "policy-module")!;

async function api(user: TestUser, method: string, path: string, body?: unknown) {
  const res = await fetch(`${user.org.clientUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${user.accessToken}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
const verify = (u: TestUser, number: string, claimed_name: string, registry = "BIG") =>
  api(u, "POST", "/_medmesh/identity/v1/verification", { registry, number, claimed_name });

async function seenBy(o: RunningOrganisation, userId: string): Promise<boolean> {
  const res = await fetch(`${policy(o).url}/_medmesh/admin/v1/identity/users/${encodeURIComponent(userId)}`);
  return ((await res.json()) as { verified: boolean }).verified;
}

/** The badge as the other organisation's member reads it through their own homeserver. */
async function waitForBadge(reader: TestUser, roomId: string, userId: string, verified: boolean) {
  let badge: Record<string, unknown> = {};
  const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/org.medmesh.verification/${encodeURIComponent(`user:${userId}`)}`;
  await waitFor(
    async () => {
      const res = await api(reader, "GET", path);
      badge = res.body;
      return res.status === 200 && badge.verified === verified;
    },
    `${userId}'s badge says verified=${String(verified)}`,
  ).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; last seen: ${JSON.stringify(badge)}`);
  });
  return badge;
}

async function waitFor(check: () => Promise<boolean>, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 300));
  }
  throw new Error(`timed out waiting until ${what}`);
}

describe("verified clinician identity", () => {
  let ann: TestUser;
  let bram: TestUser;
  let annClient: MatrixClient;
  let bramClient: MatrixClient;
  let roomId: string;

  it("verifies a clinician against the registry, badges them in a shared room, and the other organisation checks the attestation", async () => {
    ann = await net().registerUser(org(0), "ann");
    bram = await net().registerUser(org(1), "bram");
    [annClient, bramClient] = await Promise.all([net().client(ann), net().client(bram)]);
    const before = big.requests;
    expect(await verify(ann, "190 1234 5601", "Anne de Vries")).toMatchObject({
      status: 200,
      body: { status: "verified", profession: "physician" },
    });
    expect(big.requests).toBe(before + 1);
    expect((await api(ann, "GET", "/_medmesh/identity/v1/verification")).body).toMatchObject({
      status: "verified",
      registry: "BIG",
    });

    // A room on A shared with B: the MedMesh bot of A badges both members.
    const { room_id } = await annClient.createRoom({ invite: [bram.userId] });
    roomId = room_id;
    await waitForMembership(bramClient, roomId, "invite", { description: "Ann's invite" });
    await bramClient.joinRoom(roomId);
    const badge = await waitForBadge(bram, roomId, ann.userId, true);
    expect(badge).toMatchObject({ verified: true, profession: "physician", registry: "BIG" });
    expect(typeof badge.attestation).toBe("string");

    // B's service fetches and checks A's attestation with the key from the trust list.
    expect(await seenBy(org(1), ann.userId)).toBe(true);
    expect(await seenBy(org(1), bram.userId)).toBe(false);
  });

  it("revokes a struck-off clinician in the next re-verification run; the other organisation follows after its refresh", async () => {
    big.setRecords([{ ...ANN, registrationEnd: "2026-01-01" }, BRAM]);
    const run = await fetch(`${policy(org(0)).url}/_medmesh/admin/v1/identity/reverify`, { method: "POST" });
    expect(await run.json()).toMatchObject({ ran: true, revoked: 1 });
    expect(await seenBy(org(0), ann.userId)).toBe(false);
    await waitForBadge(bram, roomId, ann.userId, false);
    await waitFor(async () => !(await seenBy(org(1), ann.userId)), "B no longer sees Ann as verified");
    expect((await api(ann, "GET", "/_medmesh/identity/v1/verification")).body).toMatchObject({
      status: "revoked",
      reason: expect.stringMatching(/struck off/) as unknown,
    });
  });

  it("refuses bad input with clear errors and no status", async () => {
    const u = await net().registerUser(org(0));
    expect(await verify(u, "1234", "X")).toMatchObject({ status: 400, body: { errcode: "M_INVALID_PARAM" } });
    expect(await verify(u, "19012345601", "X", "NOPE")).toMatchObject({
      status: 400,
      body: { error: expect.stringMatching(/Unknown registry NOPE/) as unknown },
    });
    expect((await api(u, "GET", "/_medmesh/identity/v1/verification")).status).toBe(404);
    expect(await verify(u, "99999999999", "Q. Nobody")).toMatchObject({
      status: 200,
      body: { status: "rejected", reason: expect.stringMatching(/does not know/) as unknown },
    });
    expect((await verify(u, "29012345602", "P. Pietersen")).body).toMatchObject({ status: "rejected" });
    expect(await seenBy(org(0), u.userId)).toBe(false);
  });

  it("keeps a check pending while the registry times out or faults, and never verifies", async () => {
    const u = await net().registerUser(org(0), "bea");
    big.setRecords([
      ANN,
      BRAM,
      {
        number: "39012345603",
        initials: "B.",
        surname: "Smit",
        mailingName: "B. Smit",
        professionCode: "17",
      },
    ]);
    for (const mode of ["slow", "fault", "malformed"] as const) {
      big.setMode(mode);
      expect((await verify(u, "39012345603", "B. Smit")).body).toMatchObject({ status: "pending" });
      expect(await seenBy(org(0), u.userId)).toBe(false);
    }
    // Retried by the next run, once the registry answers again.
    big.setMode("normal");
    await fetch(`${policy(org(0)).url}/_medmesh/admin/v1/identity/reverify`, { method: "POST" });
    expect(await seenBy(org(0), u.userId)).toBe(true);
  });

  it("routes a first verification through the admin's ID-document review where the organisation asks for it", async () => {
    const b = org(1);
    const admin = await registerWithSharedSecret(b.synapseUrl, b.registrationSecret, {
      localpart: "b-admin",
      password: "b-admin-password-1",
      admin: true,
    });
    const adminUser = { ...admin, localpart: "b-admin", password: "", org: b };
    expect((await verify(bram, BRAM.number, "B. Jansen")).body).toMatchObject({
      status: "awaiting_document",
    });
    expect(await seenBy(b, bram.userId)).toBe(false);

    const upload = async (type: string, data: Buffer) => {
      const res = await fetch(`${b.clientUrl}/_medmesh/identity/v1/document`, {
        method: "PUT",
        headers: { authorization: `Bearer ${bram.accessToken}`, "content-type": type },
        body: data,
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    expect(await upload("text/plain", Buffer.from("hello"))).toMatchObject({
      status: 400,
      body: { errcode: "M_INVALID_PARAM" },
    });
    expect((await upload("image/jpeg", Buffer.alloc(65 * 1024))).status).toBe(413);
    expect((await upload("image/jpeg", JPEG_WITH_GPS)).body).toMatchObject({ status: "in_review" });

    const reviews = "/_medmesh/admin/v1/identity/reviews";
    expect((await api(bram, "GET", reviews)).status).toBe(403); // not an admin
    expect((await api(adminUser, "GET", reviews)).body).toEqual({
      reviews: [expect.objectContaining({ user_id: bram.userId, registry: "BIG", profession: "nurse" })],
    });
    const doc = await fetch(`${b.clientUrl}${reviews}/${encodeURIComponent(bram.userId)}/document`, {
      headers: { authorization: `Bearer ${adminUser.accessToken}` },
    });
    expect(doc.headers.get("content-type")).toBe("image/jpeg");
    expect(Buffer.from(await doc.arrayBuffer()).equals(JPEG_WITH_GPS)).toBe(true);
    expect(
      (await api(adminUser, "POST", `${reviews}/${encodeURIComponent(bram.userId)}`, { decision: "reject" }))
        .status,
    ).toBe(400);

    const approved = await api(adminUser, "POST", `${reviews}/${encodeURIComponent(bram.userId)}`, {
      decision: "approve",
    });
    expect(approved.body).toMatchObject({ status: "verified", profession: "nurse" });
    expect(await seenBy(b, bram.userId)).toBe(true);
    // The document is gone once decided.
    const gone = await fetch(`${b.clientUrl}${reviews}/${encodeURIComponent(bram.userId)}/document`, {
      headers: { authorization: `Bearer ${adminUser.accessToken}` },
    });
    expect(gone.status).toBe(404);
  });
});
