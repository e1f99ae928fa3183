import { createCipheriv, createHash, randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import { RoomEvent, type MatrixClient } from "matrix-js-sdk";
import {
  startBigTestServer,
  type BigTestRecord,
} from "../../policy-module/src/identity/registries/big/test-server.ts";
import { createLogger, registerWithSharedSecret } from "@medmesh/common";
import { start as startPolicyModule } from "@medmesh/policy-module";
import { JPEG_WITH_GPS } from "../../policy-module/src/media/test-images.ts";
import { join } from "node:path";
import { REPO_ROOT, type RunningOrganisation } from "@medmesh/deploy";
import {
  adminApi,
  OpenApiContract,
  roomBodies,
  startClient,
  useTestNetwork,
  waitForMembership,
  waitUntil,
  waitForRoomEvent,
  type TestUser,
} from "../harness/index.ts";

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
  // Hospital A checks the registry only (no longer the default); GP circle B keeps the default:
  // an ID document reviewed before a first verification.
  // A number bound to one of its accounts: A refuses another account's claim (the default), B
  // sends it to its admin's review.
  organisationSettings: {
    0: { require_id_document: false },
    1: { require_id_document: true, duplicate_number: "review" },
  },
});

const org = (i: number): RunningOrganisation => net().orgs[i]!;

const contract = new OpenApiContract(join(REPO_ROOT, "policy-module", "openapi", "policy-module.yaml"));
/** Every answer of MedMesh's own API is checked against its OpenAPI document. */
async function documented(method: string, path: string, res: Response): Promise<Response> {
  const op = contract.match(method, path);
  if (op) await contract.check(op, res.clone());
  return res;
}

async function api(user: TestUser, method: string, path: string, body?: unknown) {
  const res = await documented(
    method,
    path,
    await fetch(`${user.org.clientUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${user.accessToken}`, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    }),
  );
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
const verify = (u: TestUser, number: string, claimed_name: string, registry = "BIG") =>
  api(u, "POST", "/_medmesh/identity/v1/verification", { registry, number, claimed_name });

const verifyStatus = (u: TestUser) => api(u, "GET", "/_medmesh/identity/v1/verification");

/** Encrypts a file as Matrix clients do for encrypted rooms (AES-256-CTR, key as JWK). */
function encryptAttachment(plain: Buffer) {
  const key = randomBytes(32);
  const iv = Buffer.concat([randomBytes(8), Buffer.alloc(8)]);
  const cipher = createCipheriv("aes-256-ctr", key, iv);
  const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
  const b64 = (b: Buffer) => b.toString("base64").replace(/=+$/, "");
  return {
    ciphertext,
    file: {
      key: {
        kty: "oct",
        alg: "A256CTR",
        k: key.toString("base64url"),
        key_ops: ["encrypt", "decrypt"],
        ext: true,
      },
      iv: b64(iv),
      hashes: { sha256: b64(createHash("sha256").update(ciphertext).digest()) },
      v: "v2",
    },
  };
}

const botOf = (o: RunningOrganisation): string => `@medmesh-verify:${o.serverName}`;

/** The first room the client is invited to (the bot opening a direct chat with someone it must tell). */
function invitedRoom(client: MatrixClient): Promise<string> {
  return new Promise<string>((resolve) => {
    client.on(RoomEvent.MyMembership, (room, membership) => {
      if (membership === "invite") resolve(room.roomId);
    });
    const invited = client.getRooms().find((r) => r.getMyMembership() === "invite");
    if (invited) resolve(invited.roomId);
  });
}

/** The bot's next notice in a room matching `text` (decrypted by the reader's own client). */
function botSays(client: MatrixClient, roomId: string, text: RegExp, timeoutMs?: number) {
  return waitForRoomEvent(
    client,
    roomId,
    (e) => e.getSender()?.startsWith("@medmesh-verify:") === true && text.test(String(e.getContent().body)),
    { description: `the bot saying ${String(text)}`, ...(timeoutMs === undefined ? {} : { timeoutMs }) },
  );
}

async function seenBy(o: RunningOrganisation, userId: string): Promise<boolean> {
  const path = `/_medmesh/admin/v1/identity/users/${encodeURIComponent(userId)}`;
  const res = await documented("GET", path, await adminApi(o, "policy-module").fetch(path));
  return ((await res.json()) as { verified: boolean }).verified;
}

/** The badge as the other organisation's member reads it through their own homeserver. */
async function waitForBadge(reader: TestUser, roomId: string, userId: string, verified: boolean) {
  let badge: Record<string, unknown> = {};
  const path = `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/org.medmesh.verification/${encodeURIComponent(`user:${userId}`)}`;
  await waitUntil(
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

describe("verified clinician identity", () => {
  let ann: TestUser;
  let bram: TestUser;
  let annClient: MatrixClient;
  let bramClient: MatrixClient;
  let roomId: string;
  let annDm: string;

  it("verifies a clinician against the registry, badges them in a shared room, and the other organisation checks the attestation", async () => {
    ann = await net().registerUser(org(0), "ann");
    bram = await net().registerUser(org(1), "bram");
    [annClient, bramClient] = await Promise.all([net().client(ann), net().client(bram)]);
    // Ann asks the MedMesh bot in an (end-to-end encrypted) direct chat.
    const before = big.requests;
    const dm = await annClient.createRoom({ invite: [botOf(org(0))], is_direct: true });
    annDm = dm.room_id;
    await waitUntil(
      () => Promise.resolve(annClient.getRoom(annDm)?.getMember(botOf(org(0)))?.membership === "join"),
      "the bot joined Ann's direct chat",
    );
    await annClient.sendTextMessage(annDm, "verify BIG 190 1234 5601 Anne de Vries");
    const answer = await botSays(annClient, annDm, /verified as physician/);
    expect(answer.isEncrypted()).toBe(true);
    expect(big.requests).toBe(before + 1);
    expect((await api(ann, "GET", "/_medmesh/identity/v1/verification")).body).toMatchObject({
      status: "verified",
      registry: "BIG",
    });

    // The same statement as a profile field (extended profiles) that only MedMesh can set.
    const field = `/_matrix/client/v3/profile/${encodeURIComponent(ann.userId)}/org.medmesh.verification`;
    await waitUntil(async () => {
      const res = await api(ann, "GET", field);
      return (res.body["org.medmesh.verification"] as { verified?: boolean } | undefined)?.verified === true;
    }, "Ann's profile carries the verification field");
    expect(await api(ann, "PUT", field, { "org.medmesh.verification": { verified: true } })).toMatchObject({
      status: 403,
      body: { errcode: "M_FORBIDDEN" },
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

    // Ann's number is hers: another account of Hospital A claiming it is refused, nothing stored.
    const mal = await net().registerUser(org(0), "mal");
    expect(await verify(mal, ANN.number, "A. de Vries")).toEqual({
      status: 409,
      body: {
        errcode: "ORG.MEDMESH.NUMBER_IN_USE",
        error: expect.stringMatching(/already bound to another account of this organisation/) as unknown,
      },
    });
    expect((await verifyStatus(mal)).status).toBe(404);
    expect(await seenBy(org(0), mal.userId)).toBe(false);
  });

  it("revokes a struck-off clinician in the next re-verification run; the other organisation follows after its refresh", async () => {
    const a = org(0);
    const admin = await registerWithSharedSecret(a.synapseUrl, a.registrationSecret, {
      localpart: "a-admin",
      password: "a-admin-password-1",
      admin: true,
    });
    const adminClient = await net().client({ ...admin, localpart: "a-admin", password: "", org: a });
    big.setRecords([{ ...ANN, registrationEnd: "2026-01-01" }, BRAM]);
    const reverify = "/_medmesh/admin/v1/identity/reverify";
    const run = await documented(
      "POST",
      reverify,
      await adminApi(org(0), "policy-module").fetch(reverify, { method: "POST" }),
    );
    expect(await run.json()).toMatchObject({ ran: true, revoked: 1 });
    expect(await seenBy(org(0), ann.userId)).toBe(false);
    await waitForBadge(bram, roomId, ann.userId, false);
    // Ann hears it from the bot where she asked; the organisation's admin in a new direct chat.
    await botSays(annClient, annDm, /withdrawn: .*struck off/);
    const adminDm = await invitedRoom(adminClient);
    await adminClient.joinRoom(adminDm);
    await botSays(adminClient, adminDm, new RegExp(`${ann.userId} is no longer a verified clinician`));
    await waitUntil(async () => !(await seenBy(org(1), ann.userId)), "B no longer sees Ann as verified");
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

  it("keeps every check in an audit chain that is anchored and verified end to end", async () => {
    const pm = adminApi(org(0), "policy-module");
    const anchorPath = "/_medmesh/admin/v1/audit/anchor";
    const verifyPath = "/_medmesh/admin/v1/audit/verify";
    const anchored = await documented("POST", anchorPath, await pm.fetch(anchorPath, { method: "POST" }));
    expect(anchored.status).toBe(200);
    const check = async () =>
      (await (await documented("GET", verifyPath, await pm.fetch(verifyPath))).json()) as {
        ok: boolean;
        records: number;
        last: { seq: number };
        anchor: { seq: number; signature_valid: boolean } | null;
        break?: { kind: string; seq: number };
      };
    const report = await check();
    expect(report).toMatchObject({ ok: true, anchor: { signature_valid: true } });
    expect(report.records).toBeGreaterThan(0); // the checks above were recorded
    // Records written since the anchor (the service keeps working) are after it, not before.
    const anchoredSeq = report.anchor?.seq ?? 0;
    expect(anchoredSeq).toBeGreaterThan(0);
    expect(anchoredSeq).toBeLessThanOrEqual(report.last.seq);

    // Deleting the newest records leaves a consistent chain; only the anchor shows it.
    const knex = org(0).services.find((s) => s.name === "policy-module")!.store.knex;
    const newest = (await knex("audit_log").where("seq", ">=", anchoredSeq).orderBy("seq")) as Record<
      string,
      unknown
    >[];
    await knex("audit_log").where("seq", ">=", anchoredSeq).delete();
    try {
      expect(await check()).toMatchObject({ ok: false, break: { kind: "truncated", seq: anchoredSeq } });
    } finally {
      await knex("audit_log").insert(newest.map((r) => ({ ...r, details: JSON.stringify(r.details) })));
    }
    expect(await check()).toMatchObject({ ok: true });
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
    await adminApi(org(0), "policy-module").json("POST", "/_medmesh/admin/v1/identity/reverify");
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
    const adminClient = await net().client(adminUser);
    expect((await verify(bram, BRAM.number, "B. Jansen")).body).toMatchObject({
      status: "awaiting_document",
    });
    expect(await seenBy(b, bram.userId)).toBe(false);

    const upload = async (type: string, data: Buffer) => {
      const path = "/_medmesh/identity/v1/document";
      const res = await documented(
        "PUT",
        path,
        await fetch(`${b.clientUrl}${path}`, {
          method: "PUT",
          headers: { authorization: `Bearer ${bram.accessToken}`, "content-type": type },
          body: data,
        }),
      );
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    expect(await upload("text/plain", Buffer.from("hello"))).toMatchObject({
      status: 400,
      body: { errcode: "M_INVALID_PARAM" },
    });
    expect((await upload("image/jpeg", Buffer.alloc(65 * 1024))).status).toBe(413);
    // The document itself goes to the bot, as clients send files in encrypted rooms: AES-CTR
    // ciphertext uploaded as opaque media, the key inside the encrypted event.
    const dm = await bramClient.createRoom({ invite: [botOf(b)], is_direct: true });
    await waitUntil(
      () => Promise.resolve(bramClient.getRoom(dm.room_id)?.getMember(botOf(b))?.membership === "join"),
      "the bot joined Bram's direct chat",
    );
    const { ciphertext, file } = encryptAttachment(JPEG_WITH_GPS);
    const { content_uri } = await bramClient.uploadContent(ciphertext, { type: "application/octet-stream" });
    await bramClient.sendMessage(dm.room_id, {
      msgtype: "m.image",
      body: "id.jpg",
      info: { mimetype: "image/jpeg", size: JPEG_WITH_GPS.length },
      file: { ...file, url: content_uri },
    } as never);
    await botSays(bramClient, dm.room_id, /with your organisation's admin for review/);
    expect((await verifyStatus(bram)).body).toMatchObject({ status: "in_review" });
    // The organisation's reviewers (here its server admin) hear from the bot that a document waits.
    const adminDm = await invitedRoom(adminClient);
    await adminClient.joinRoom(adminDm);
    await botSays(
      adminClient,
      adminDm,
      new RegExp(`${bram.userId} sent an ID document .* waits for your review`),
    );

    const reviews = "/_medmesh/admin/v1/identity/reviews";
    expect((await api(bram, "GET", reviews)).status).toBe(403); // not an admin
    expect((await api(adminUser, "GET", reviews)).body).toEqual({
      reviews: [expect.objectContaining({ user_id: bram.userId, registry: "BIG", profession: "nurse" })],
    });
    const docPath = `${reviews}/${encodeURIComponent(bram.userId)}/document`;
    const doc = await documented(
      "GET",
      docPath,
      await fetch(`${b.clientUrl}${docPath}`, {
        headers: { authorization: `Bearer ${adminUser.accessToken}` },
      }),
    );
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
    await botSays(bramClient, dm.room_id, /verified as nurse/);
    expect(await seenBy(b, bram.userId)).toBe(true);
    // The document is gone once decided.
    const gone = await documented(
      "GET",
      docPath,
      await fetch(`${b.clientUrl}${docPath}`, {
        headers: { authorization: `Bearer ${adminUser.accessToken}` },
      }),
    );
    expect(gone.status).toBe(404);

    // B sends a second account's claim of Bram's number to review, the conflict shown; the admin
    // rejects it and Bram keeps his verification.
    const brenda = await net().registerUser(b, "brenda");
    expect((await verify(brenda, BRAM.number, "B. Jansen")).body).toMatchObject({
      status: "awaiting_document",
      reason: expect.stringMatching(/already bound to another account/) as unknown,
    });
    const put = await fetch(`${b.clientUrl}/_medmesh/identity/v1/document`, {
      method: "PUT",
      headers: { authorization: `Bearer ${brenda.accessToken}`, "content-type": "image/jpeg" },
      body: JPEG_WITH_GPS,
    });
    expect(put.status).toBe(200);
    expect((await api(adminUser, "GET", reviews)).body).toEqual({
      reviews: [expect.objectContaining({ user_id: brenda.userId, conflict: { user_id: bram.userId } })],
    });
    expect(
      (
        await api(adminUser, "POST", `${reviews}/${encodeURIComponent(brenda.userId)}`, {
          decision: "reject",
          reason: "Not the person registered under this number",
        })
      ).body,
    ).toMatchObject({ status: "rejected" });
    expect(await seenBy(b, bram.userId)).toBe(true);
    expect(await seenBy(b, brenda.userId)).toBe(false);
  });

  it("answers, exactly once, what was sent to the bot while the policy module was down, with the same device", async () => {
    const a = org(0);
    const dirk = await net().registerUser(a, "dirk");
    const dirkClient = await net().client(dirk);
    const admin = await registerWithSharedSecret(a.synapseUrl, a.registrationSecret, {
      localpart: "a-ops",
      password: "a-ops-password-1",
      admin: true,
    });
    const botDevices = async (): Promise<string[]> => {
      const res = await fetch(
        `${a.synapseUrl}/_synapse/admin/v2/users/${encodeURIComponent(botOf(a))}/devices`,
        { headers: { authorization: `Bearer ${admin.accessToken}` } },
      );
      return ((await res.json()) as { devices: { device_id: string }[] }).devices.map((x) => x.device_id);
    };
    const dm = (await dirkClient.createRoom({ invite: [botOf(a)], is_direct: true })).room_id;
    await waitUntil(
      () => Promise.resolve(dirkClient.getRoom(dm)?.getMember(botOf(a))?.membership === "join"),
      "the bot joined Dirk's direct chat",
    );
    await dirkClient.sendTextMessage(dm, "status");
    await botSays(dirkClient, dm, /You have not asked to be verified yet/);
    const before = await botDevices();
    expect(before).toHaveLength(1);

    const index = a.services.findIndex((s) => s.name === "policy-module");
    await a.services[index]!.stop();
    // The proxy is down too: Dirk's other device talks to Synapse directly. It is new to the bot,
    // so its room key travels to the bot's device (to-device) while the bot is not running.
    const phone = await fetch(`${a.synapseUrl}/_matrix/client/v3/login`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        type: "m.login.password",
        identifier: { type: "m.id.user", user: dirk.localpart },
        password: dirk.password,
      }),
    }).then((r) => r.json() as Promise<{ user_id: string; access_token: string; device_id: string }>);
    const phoneClient = await startClient(a.synapseUrl, {
      userId: phone.user_id,
      accessToken: phone.access_token,
      deviceId: phone.device_id,
    });
    try {
      await waitUntil(
        () => Promise.resolve(phoneClient.getRoom(dm)?.hasEncryptionStateEvent() === true),
        "Dirk's phone knows the direct chat",
      );
      await phoneClient.sendTextMessage(dm, "verify BIG 99999999999 D. Nobody");
      a.services[index] = await startPolicyModule(a.policyModule, {
        log: createLogger("policy-module", "warn"),
      });
      const answer = /I checked your BIG registration with the registry/;
      // After a restart: Synapse resends the held transaction once the service answers its ping
      // again, and the room key comes with the bot's first sync; on a loaded machine, seconds.
      await botSays(phoneClient, dm, answer, 90_000);
      expect(await botDevices()).toEqual(before);
      // The bot still reads Dirk's first device, whose room key it received before the restart.
      await dirkClient.sendTextMessage(dm, "status");
      await botSays(dirkClient, dm, /Your verification was not accepted/);
      const bodies = await roomBodies(phoneClient, dm);
      expect(bodies.filter((b) => answer.test(b))).toHaveLength(1);
      expect(bodies.filter((b) => /could not read/.test(b))).toEqual([]);
    } finally {
      phoneClient.stopClient();
    }
  });
});
