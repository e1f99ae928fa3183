import { randomBytes } from "node:crypto";
import { createSynapseAdmin } from "@medmesh/common";
import type { RunningOrganisation } from "@medmesh/deploy";
import { describe, expect, it } from "vitest";
import { JPEG_WITH_GPS } from "../../policy-module/src/media/test-images.ts";
import { REMOTE_MEDIA_DELETE } from "../../policy-module/src/retention/sweeper.ts";
import {
  adminApi,
  useTestNetwork,
  waitForMembership,
  waitUntil,
  withSynapseDb,
  type TestUser,
} from "../harness/index.ts";
import type { TestNetwork } from "../harness/test-network.ts";

// Retention deletes exactly what expired: avatars and room state are not messages, and history is
// purged only up to what the index has seen.
const net = useTestNetwork({ name: "retention-lifecycle", organisations: 2 });
const POSTGRES = process.env.MEDMESH_TEST_POSTGRES_URL;
// The same on PostgreSQL (Synapse's database and MedMesh's store), where CI provides a server.
const pgNet = POSTGRES
  ? useTestNetwork({ name: "retention-lifecycle-pg", organisations: 2, postgresUrl: POSTGRES })
  : undefined;
const DAY = 86_400_000;
const org = (i: number): RunningOrganisation => net().orgs[i]!;
const policy = (o: RunningOrganisation) => o.services.find((s) => s.name === "policy-module")!;
const enc = encodeURIComponent;

async function call(u: TestUser, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${u.org.clientUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${u.accessToken}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
}
async function json<T>(res: Promise<Response>): Promise<T> {
  const r = await res;
  const body = (await r.json()) as T;
  if (!r.ok) throw new Error(`${String(r.status)} ${JSON.stringify(body)}`);
  return body;
}
async function sweep(o: RunningOrganisation, now: Date): Promise<Record<string, unknown>> {
  return adminApi(o, "policy-module").json("POST", "/_medmesh/admin/v1/retention/sweep", {
    now: now.toISOString(),
  });
}
async function upload(u: TestUser): Promise<string> {
  const res = await fetch(`${u.org.clientUrl}/_matrix/media/v3/upload?filename=x.jpg`, {
    method: "POST",
    headers: { authorization: `Bearer ${u.accessToken}`, "content-type": "image/jpeg" },
    body: JPEG_WITH_GPS,
  });
  return ((await res.json()) as { content_uri: string }).content_uri;
}
/** A download (or thumbnail) of a file as a user sees it through their organisation: its status. */
async function fetchMedia(
  u: TestUser,
  mxc: string,
  kind: "download" | "thumbnail" = "download",
): Promise<number> {
  const q = kind === "thumbnail" ? "?width=8&height=8&method=scale" : "";
  const res = await fetch(
    `${u.org.clientUrl}/_matrix/client/v1/media/${kind}/${mxc.slice("mxc://".length)}${q}`,
    {
      headers: { authorization: `Bearer ${u.accessToken}` },
    },
  );
  await res.arrayBuffer();
  return res.status;
}
/** Sends as the room-admin bot with an origin timestamp in the past (the appservice `ts` parameter). */
async function sendOld(
  o: RunningOrganisation,
  roomId: string,
  content: object,
  ageMs: number,
): Promise<string> {
  const url = new URL(
    `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/old-${randomBytes(6).toString("hex")}`,
    o.synapseUrl,
  );
  url.searchParams.set("user_id", `@medmesh:${o.serverName}`);
  url.searchParams.set("ts", String(Date.now() - ageMs));
  const body = await json<{ event_id: string }>(
    fetch(url, {
      method: "PUT",
      headers: {
        authorization: `Bearer ${policy(o).registration.as_token}`,
        "content-type": "application/json",
      },
      body: JSON.stringify(content),
    }),
  );
  return body.event_id;
}
/** The tables of Synapse's database (SQLite or PostgreSQL) that still hold the text, read directly. */
function tablesHolding(o: RunningOrganisation, text: string): Promise<string[]> {
  const postgres = o.org.database.type === "postgres";
  return withSynapseDb(o, async (db) => {
    const tables = (
      await db.all<{ name: string }>(
        postgres
          ? "SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
          : "SELECT name FROM sqlite_master WHERE type = 'table'",
      )
    ).map((t) => t.name);
    const holding: string[] = [];
    for (const name of tables) {
      const quoted = `"${name.replaceAll('"', '""')}"`;
      try {
        if (postgres) {
          const rows = await db.all(`SELECT 1 FROM ${quoted} t WHERE t::text LIKE ? LIMIT 1`, [`%${text}%`]);
          if (rows.length > 0) holding.push(name);
          continue;
        }
        const rows = await db.all<Record<string, unknown>>(`SELECT * FROM ${quoted}`);
        const holds = rows.some((r) =>
          Object.values(r).some((v) =>
            (v instanceof Uint8Array ? Buffer.from(v).toString("latin1") : String(v)).includes(text),
          ),
        );
        if (holds) holding.push(name);
      } catch (err) {
        // Synapse's background updates drop their temporary tables as they finish.
        if ((err as { code?: string }).code === "42P01" || /no such table/.test(String(err))) continue;
        throw err;
      }
    }
    return holding;
  });
}

/**
 * A room homed on A with members on A and B: after the period the expired message's text is gone
 * from both organisations' Synapse databases — A's MedMesh redacts and purges, B's purges its own
 * copy — while a kept message stays on both.
 */
async function everyServerForgets(network: () => TestNetwork): Promise<void> {
  const [a, b] = network().orgs as [RunningOrganisation, RunningOrganisation];
  const ann = await network().registerUser(a);
  const bob = await network().registerUser(b);
  const [annClient, bobClient] = await Promise.all([network().client(ann), network().client(bob)]);
  const { room_id: roomId } = await annClient.createRoom({ invite: [bob.userId] });
  await waitForMembership(bobClient, roomId, "invite");
  await bobClient.joinRoom(roomId);
  const marker = `expired-${randomBytes(6).toString("hex")}`;
  const keptText = `kept-${randomBytes(6).toString("hex")}`;
  const fresh = `fresh-${randomBytes(6).toString("hex")}`;
  await sendOld(a, roomId, { msgtype: "m.text", body: marker }, 40 * DAY);
  const kept = await sendOld(a, roomId, { msgtype: "m.text", body: keptText }, 38 * DAY);
  const last = await sendOld(a, roomId, { msgtype: "m.text", body: fresh }, 1 * DAY);
  await annClient.sendStateEvent(roomId, "m.room.pinned_events" as never, { pinned: [kept] } as never, "");
  // B's server has the whole conversation.
  await waitUntil(
    async () =>
      (await call(bob, "GET", `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(last)}`)).ok || undefined,
    "B has the newest message",
  );
  for (const o of [a, b]) expect((await tablesHolding(o, marker)).length, o.serverName).toBeGreaterThan(0);

  await waitUntil(
    async () => ((await sweep(a, new Date())).redacted as number) >= 1 || undefined,
    "A redacts the expired message",
  );
  expect(await sweep(b, new Date())).toMatchObject({ ran: true, redacted: 0, failed: 0, forgotten: 1 });
  for (const o of [a, b]) {
    await waitUntil(
      async () => (await tablesHolding(o, marker)).length === 0 || undefined,
      `${o.serverName} no longer holds the expired text`,
    );
    expect(
      (await tablesHolding(o, keptText)).length,
      `${o.serverName} keeps the kept message`,
    ).toBeGreaterThan(0);
    expect((await tablesHolding(o, fresh)).length, `${o.serverName} keeps the newer message`).toBeGreaterThan(
      0,
    );
  }
}

describe("retention deletes exactly what expired", () => {
  it("keeps profile and room avatars through sweeps past the period; deletes an expired upload and its thumbnail at both organisations", async () => {
    const a = org(0);
    const ann = await net().registerUser(a);
    const bob = await net().registerUser(org(1));
    const [annClient, bobClient] = await Promise.all([net().client(ann), net().client(bob)]);
    const { room_id: roomId } = await annClient.createRoom({ invite: [bob.userId] });
    await waitForMembership(bobClient, roomId, "invite");
    await bobClient.joinRoom(roomId);

    const profileAvatar = await upload(ann);
    await json(
      call(ann, "PUT", `/_matrix/client/v3/profile/${enc(ann.userId)}/avatar_url`, {
        avatar_url: profileAvatar,
      }),
    );
    const roomAvatar = await upload(ann);
    await json(
      call(ann, "PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.avatar/`, { url: roomAvatar }),
    );
    const attachment = await upload(ann);
    // 29 days old: B's server reads it (it hears of a room homed elsewhere through its own
    // sweeps) while it is still whole, as it would during the message's life.
    const imageId = await sendOld(
      a,
      roomId,
      { msgtype: "m.image", body: "x.jpg", url: attachment },
      29 * DAY,
    );
    // B's server caches the attachment (and a thumbnail) when B's member looks at it.
    for (const kind of ["download", "thumbnail"] as const) {
      expect(await fetchMedia(ann, attachment, kind)).toBe(200);
      expect(await fetchMedia(bob, attachment, kind)).toBe(200);
    }
    await waitUntil(
      async () =>
        (await policy(a).store.knex("retention_events").where({ event_id: imageId }).first()) as unknown,
      "the attachment's message indexed",
    );

    await waitUntil(
      async () =>
        (await call(bob, "GET", `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(imageId)}`)).ok ||
        undefined,
      "the message at B's server",
    );
    expect(await sweep(org(1), new Date())).toMatchObject({ failed: 0, forgotten: 0 });
    const atBNow: unknown = await policy(org(1))
      .store.knex("retention_events")
      .where({ event_id: imageId })
      .first("media");
    expect(atBNow, "B read the message while it was whole").toEqual({ media: [attachment] });

    // Past the period, A's sweep deletes the original; B still serves the copy it fetched (and Bob
    // just looked at it again, so Synapse's own cache purge, by last access, keeps it) until B's sweep.
    const later = new Date(Date.now() + 2 * DAY);
    expect((await sweep(a, later)).failed).toBe(0);
    for (const kind of ["download", "thumbnail"] as const) {
      expect(await fetchMedia(ann, attachment, kind), `A ${kind}`).toBe(404);
      expect(await fetchMedia(bob, attachment, kind), `B's copy, ${kind}`).toBe(200);
    }
    expect(await sweep(org(1), later)).toMatchObject({ failed: 0, forgotten: 1, remote_media_deleted: 1 });
    for (const kind of ["download", "thumbnail"] as const)
      expect(await fetchMedia(bob, attachment, kind), `B ${kind}`).toBe(404);

    for (const later of [31, 61, 121]) {
      for (const o of [a, org(1)])
        expect((await sweep(o, new Date(Date.now() + later * DAY))).failed).toBe(0);
    }
    for (const mxc of [profileAvatar, roomAvatar]) {
      expect(await fetchMedia(ann, mxc), mxc).toBe(200);
      expect(await fetchMedia(bob, mxc), mxc).toBe(200);
    }
    for (const kind of ["download", "thumbnail"] as const) {
      expect(await fetchMedia(ann, attachment, kind), `A ${kind}`).toBe(404);
      expect(await fetchMedia(bob, attachment, kind), `B ${kind}`).toBe(404);
    }
  });

  it("deletes copies of other servers' media by the time they were fetched, however often they are looked at", async () => {
    const ann = await net().registerUser(org(0));
    const bob = await net().registerUser(org(1));
    const file = await upload(ann);
    expect(await fetchMedia(bob, file)).toBe(200); // B fetches its copy now
    // The original goes (as its server's retention would); Bob keeps looking at B's copy.
    const adminOf = (o: RunningOrganisation) =>
      createSynapseAdmin({ url: o.synapseUrl, registrationSharedSecret: o.registrationSecret });
    const prefix = `mxc://${org(0).serverName}/`;
    await adminOf(org(0)).request(
      "DELETE",
      `/_synapse/admin/v1/media/${enc(org(0).serverName)}/${enc(file.slice(prefix.length))}`,
    );
    expect(await fetchMedia(ann, file)).toBe(404);
    expect(await fetchMedia(bob, file), "B's copy after a fresh look").toBe(200);
    // Not a server admin (straight to Synapse: the proxy does not forward this path): refused.
    const refused = await fetch(`${org(1).synapseUrl}${REMOTE_MEDIA_DELETE}`, {
      method: "POST",
      headers: { authorization: `Bearer ${bob.accessToken}`, "content-type": "application/json" },
      body: JSON.stringify({ fetched_before_ts: Date.now() }),
    });
    expect(refused.status).toBe(403);
    expect(await fetchMedia(bob, file), "B's copy after a refused delete").toBe(200);
    const remote = await adminOf(org(1)).request<{ deleted: number }>("POST", REMOTE_MEDIA_DELETE, {
      fetched_before_ts: Date.now(),
    });
    expect(remote.deleted).toBeGreaterThanOrEqual(1);
    expect(await fetchMedia(bob, file), "B's copy, fetched before the cut").toBe(404);
  });

  it("purges history only up to what the index has seen: an event Synapse stored but the index has not survives", async () => {
    const a = org(0);
    const ann = await net().registerUser(a);
    const annClient = await net().client(ann);
    const { room_id: roomId } = await annClient.createRoom({});
    await waitUntil(async () => {
      const s = (await annClient.getStateEvent(roomId, "m.room.retention", "").catch(() => undefined)) as
        { max_lifetime?: number } | undefined;
      return s?.max_lifetime !== undefined || undefined;
    }, "the bot joined");
    const marker = `expired-${randomBytes(6).toString("hex")}`;
    const unseen = `unseen-${randomBytes(6).toString("hex")}`;
    await sendOld(a, roomId, { msgtype: "m.text", body: marker }, 40 * DAY);
    const late = await sendOld(a, roomId, { msgtype: "m.text", body: unseen }, 1 * DAY);
    const index = policy(a).store.knex("retention_events");
    await waitUntil(
      async () => ((await index.clone().where({ event_id: late }).first()) as unknown) ?? undefined,
      "indexed",
    );
    // As if its transaction had not arrived yet (Synapse can hold one back until a recovery).
    await index.clone().where({ event_id: late }).delete();

    expect(await sweep(a, new Date())).toMatchObject({ ran: true, redacted: 1, failed: 0, purged_rooms: 1 });
    expect(await tablesHolding(a, marker)).toEqual([]);
    expect((await tablesHolding(a, unseen)).length).toBeGreaterThan(0);
    const event = await call(ann, "GET", `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(late)}`);
    expect(((await event.json()) as { content?: { body?: string } }).content?.body).toBe(unseen);
  });
});

describe("retention follows a room upgrade", () => {
  it("the bot joins the successor room, which is indexed and swept like its predecessor", async () => {
    const a = org(0);
    const ann = await net().registerUser(a);
    const annClient = await net().client(ann);
    const { room_id: old } = await annClient.createRoom({});
    const period = async (roomId: string) =>
      (
        (await annClient.getStateEvent(roomId, "m.room.retention", "").catch(() => undefined)) as
          { max_lifetime?: number } | undefined
      )?.max_lifetime;
    await waitUntil(async () => (await period(old)) ?? undefined, "the bot joined the room");
    const up = await json<{ replacement_room: string }>(
      call(ann, "POST", `/_matrix/client/v3/rooms/${enc(old)}/upgrade`, { new_version: "12" }),
    );
    const successor = up.replacement_room;
    // The bot's own m.room.retention in the successor shows it followed and joined.
    await waitUntil(
      async () => (await period(successor)) ?? undefined,
      "the bot followed into the successor",
    );
    const marker = `upgraded-${randomBytes(6).toString("hex")}`;
    const expired = await sendOld(a, successor, { msgtype: "m.text", body: marker }, 40 * DAY);
    await waitUntil(
      async () =>
        ((await policy(a).store.knex("retention_events").where({ event_id: expired }).first()) as unknown) ??
        undefined,
      "the successor's message indexed",
    );
    expect(await sweep(a, new Date())).toMatchObject({ ran: true, failed: 0 });
    expect(await tablesHolding(a, marker)).toEqual([]);
  });
});

describe("every server in the room forgets", () => {
  it("SQLite: the expired text leaves both organisations' Synapse databases; kept and newer messages stay", () =>
    everyServerForgets(net));
  it.runIf(pgNet)("PostgreSQL: the same", () => everyServerForgets(pgNet!));
});
