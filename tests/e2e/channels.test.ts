import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { afterAll, describe, expect, it } from "vitest";
import type { MatrixClient, MatrixEvent } from "matrix-js-sdk";
import { REPO_ROOT } from "@medmesh/deploy";
import {
  startBigTestServer,
  type BigTestRecord,
} from "../../policy-module/src/identity/registries/big/test-server.ts";
import { everyPathKit } from "../harness/every-path.ts";
import { startChromium, type HeadlessChromium } from "../harness/index.ts";
import {
  apiSignIn,
  capture,
  openSection,
  pageSignIn,
  registerWithPassword,
  text as textOf,
} from "./console-helpers.ts";
import {
  adminApi,
  OpenApiContract,
  useTestNetwork,
  waitForMembership,
  waitForRoomEvent,
  waitUntil,
  type TestUser,
} from "../harness/index.ts";

// Broadcast channels: a network channel of A for the pharmacists of A and B. Members read, only
// publishers post; the channel bot encrypts the console's posts; an urgent post's read and
// acknowledged counts are what the clients did; a mandatory channel invites a leaver again.
const VERA: BigTestRecord = {
  number: "19012345617",
  initials: "V.",
  surname: "Visser",
  mailingName: "V. Visser",
  professionCode: "17",
};
const big = await startBigTestServer([VERA]);
afterAll(() => big.stop());
let chromium: HeadlessChromium | undefined;
afterAll(() => chromium?.close());

const net = useTestNetwork({
  name: "channels",
  organisations: 2,
  identity: { registries: { big: { url: big.url, timeout_ms: 1500 } } },
  organisationSettings: { 0: { require_id_document: false } },
  verifiedClinicians: {
    0: [
      { localpart: "anna", display_name: "Anna Apotheker", profession: "pharmacist" },
      { localpart: "gijs", display_name: "Gijs Huisarts", profession: "general practitioner" },
      { localpart: "paul", display_name: "Paul Publisher", profession: "physician" },
    ],
    1: [
      { localpart: "piet", display_name: "Piet Pillen", profession: "pharmacist" },
      { localpart: "gerda", display_name: "Gerda Dokter", profession: "general practitioner" },
    ],
  },
});
const { org, user, admin, api, membership } = everyPathKit(net);
const enc = encodeURIComponent;
const contract = new OpenApiContract(join(REPO_ROOT, "policy-module", "openapi", "channels.yaml"));

/** The channels admin API of A, every answer checked against the OpenAPI document. */
async function channelsApi(method: string, path: string, body?: unknown) {
  const res = await adminApi(org(0), "policy-module").fetch(path, {
    method,
    ...(body === undefined
      ? {}
      : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
  });
  const op = contract.match(method, path);
  expect(op, `${method} ${path} is documented`).toBeDefined();
  await contract.check(op ?? "", res.clone());
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** What A's Synapse stored in the room, newest first (its admin API). */
const storedEvents = async (roomId: string) =>
  (
    await admin(0).request<{ chunk: { type: string; sender: string; event_id: string }[] }>(
      "GET",
      `/_synapse/admin/v1/rooms/${enc(roomId)}/messages?dir=b&limit=200`,
    )
  ).chunk;

const bodyOf = (e: MatrixEvent): string => String(e.getContent<{ body?: unknown }>().body);
const decrypted = (c: MatrixClient, roomId: string, body: string) =>
  waitForRoomEvent(c, roomId, (e) => e.getType() === "m.room.message" && bodyOf(e) === body, {
    description: `${c.getUserId() ?? "?"} decrypts "${body}"`,
  });

describe("broadcast channels", () => {
  let roomId = "";
  const clients = new Map<string, MatrixClient>();
  const clientOf = async (u: TestUser): Promise<MatrixClient> => {
    let c = clients.get(u.userId);
    if (!c) {
      c = await net().client(u);
      clients.set(u.userId, c);
    }
    return c;
  };
  /** Waits for the invite, then joins through the user's own organisation. */
  const accept = async (u: TestUser): Promise<MatrixClient> => {
    const c = await clientOf(u);
    await waitForMembership(c, roomId, "invite", { description: `${u.userId} is invited` });
    await c.joinRoom(roomId, { viaServers: [org(0).serverName] });
    return c;
  };

  it("refuses a channel without publishers, with a clear message, and creates nothing", async () => {
    const name = `No publishers ${randomBytes(3).toString("hex")}`;
    const refused = await channelsApi("POST", "/_medmesh/admin/v1/channels", { name, publishers: [] });
    expect(refused.status).toBe(400);
    expect(refused.body).toMatchObject({
      errcode: "M_INVALID_PARAM",
      error: expect.stringMatching(/publishers: A channel needs at least one publisher/) as unknown,
    });
    const listed = await channelsApi("GET", "/_medmesh/admin/v1/channels");
    expect((listed.body.channels as { name: string }[]).map((c) => c.name)).not.toContain(name);
    const rooms = await admin(0).request<{ total_rooms: number }>(
      "GET",
      `/_synapse/admin/v1/rooms?search_term=${enc(name)}`,
    );
    expect(rooms.total_rooms).toBe(0);
  });

  it("invites every verified pharmacist of A and B, and a broadcast from the console reaches each, decrypted", async () => {
    const [anna, gijs, paul, piet, gerda] = await Promise.all([
      user(0, "anna"),
      user(0, "gijs"),
      user(0, "paul"),
      user(1, "piet"),
      user(1, "gerda"),
    ]);
    const created = await channelsApi("POST", "/_medmesh/admin/v1/channels", {
      name: "Recalls (pharmacists)",
      scope: "network",
      professions: ["pharmacist"],
      publishers: [paul.userId],
      mandatory: true,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    roomId = created.body.room_id as string;
    expect(created.body.invited).toBe(3); // anna, piet, and paul as publisher
    const [annaC, pietC, paulC] = await Promise.all([accept(anna), accept(piet), accept(paul)]);
    expect(await membership(0, roomId, gijs.userId)).toBeUndefined();
    expect(await membership(0, roomId, gerda.userId)).toBeUndefined();
    await waitUntil(
      async () => (await membership(0, roomId, piet.userId)) === "join",
      "A's room has B's pharmacist joined",
    );
    const text = `Stock update ${randomBytes(3).toString("hex")}`;
    const posted = await channelsApi("POST", `/_medmesh/admin/v1/channels/${enc(roomId)}/posts`, {
      body: text,
    });
    expect(posted.status, JSON.stringify(posted.body)).toBe(200);
    for (const c of [annaC, pietC, paulC]) {
      const e = await decrypted(c, roomId, text);
      expect(e.isEncrypted()).toBe(true);
      expect(e.getSender()).toBe(`@medmesh-channels:${org(0).serverName}`);
    }
    // A publisher posts from their own Matrix client.
    const fromPaul = `From the pharmacy board ${randomBytes(3).toString("hex")}`;
    await paulC.sendTextMessage(roomId, fromPaul);
    await Promise.all([decrypted(annaC, roomId, fromPaul), decrypted(pietC, roomId, fromPaul)]);
  });

  it("refuses a member's post (M_FORBIDDEN) on every door, and stores nothing", async () => {
    const anna = await user(0, "anna");
    const piet = await user(1, "piet");
    for (const [u, via] of [
      [anna, "proxy"],
      [anna, "synapse"],
      [piet, "proxy"],
    ] as const) {
      const path = `/_matrix/client/v3/rooms/${enc(roomId)}/send/m.room.message/${randomBytes(6).toString("hex")}`;
      const refused = await api(u, via, "PUT", path, { msgtype: "m.text", body: "members cannot post" });
      expect(refused.status, JSON.stringify(refused.body)).toBe(403);
      expect(refused.body.errcode).toBe("M_FORBIDDEN");
    }
    const stored = await storedEvents(roomId);
    expect(
      stored.filter(
        (e) =>
          (e.sender === anna.userId || e.sender === piet.userId) &&
          (e.type === "m.room.message" || e.type === "m.room.encrypted"),
      ),
    ).toEqual([]);
  });

  it("counts who read an urgent post and who acknowledged it, as the clients did", async () => {
    const anna = await user(0, "anna");
    const piet = await user(1, "piet");
    const [annaC, pietC] = [await clientOf(anna), await clientOf(piet)];
    const text = `Recall of batch ${randomBytes(3).toString("hex")}`;
    const posted = await channelsApi("POST", `/_medmesh/admin/v1/channels/${enc(roomId)}/posts`, {
      body: text,
      urgent: true,
    });
    const eventId = posted.body.event_id as string;
    const [annaE, pietE] = await Promise.all([
      decrypted(annaC, roomId, `URGENT: ${text}`),
      decrypted(pietC, roomId, `URGENT: ${text}`),
    ]);
    expect(annaE.getContent()["org.medmesh.urgent"]).toEqual({ kind: "recall" });
    const stats = `/_medmesh/admin/v1/channels/${enc(roomId)}/posts/${enc(eventId)}`;
    expect((await channelsApi("GET", stats)).body).toMatchObject({
      urgent: true,
      members: 2,
      read: { count: 0, users: [] },
      acknowledged: { count: 0, users: [] },
    });
    // Anna reads and acknowledges (a reaction); Piet, on B, only reads.
    await annaC.sendReadReceipt(annaE);
    await annaC.sendEvent(
      roomId,
      "m.reaction" as never,
      {
        "m.relates_to": { rel_type: "m.annotation", event_id: eventId, key: "👍" },
      } as never,
    );
    await pietC.sendReadReceipt(pietE);
    const done = await waitUntil(async () => {
      const b = (await channelsApi("GET", stats)).body as {
        read: { count: number };
        acknowledged: { count: number };
      };
      return b.read.count === 2 && b.acknowledged.count === 1 ? b : undefined;
    }, "the post's counts follow the clients");
    expect(done).toMatchObject({
      read: { count: 2, users: [anna.userId, piet.userId].sort() },
      acknowledged: { count: 1, users: [anna.userId] },
    });
    const urgent = await channelsApi("GET", `/_medmesh/admin/v1/channels/${enc(roomId)}/urgent`);
    expect((urgent.body.posts as { event_id: string }[]).map((p) => p.event_id)).toContain(eventId);
  });

  it("posts from the console and shows the urgent post's counts there", async () => {
    const boss = await registerWithPassword(org(0), `boss${randomBytes(3).toString("hex")}`, true);
    const session = await apiSignIn(org(0), boss.localpart, boss.password);
    const consoleCall = async (method: string, path: string, body?: unknown, signed = session) => {
      const url = `/_medmesh/console/api/v1${path}`;
      const res = await fetch(`${org(0).clientUrl}${url}`, {
        method,
        headers: {
          cookie: signed.cookie,
          ...(method === "GET" ? {} : { "x-medmesh-csrf": signed.csrf }),
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const op = contract.match(method, url);
      expect(op, `${method} ${url} is documented`).toBeDefined();
      await contract.check(op ?? "", res.clone());
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const listed = await consoleCall("GET", "/channels");
    expect((listed.body.channels as { room_id: string }[]).map((c) => c.room_id)).toContain(roomId);
    const refused = await consoleCall("POST", "/channels", { name: "x", publishers: [] });
    expect(refused).toMatchObject({ status: 400, body: { errcode: "M_INVALID_PARAM" } });
    const text = `Console recall ${randomBytes(3).toString("hex")}`;
    const posted = await consoleCall("POST", `/channels/${enc(roomId)}/posts`, { body: text, urgent: true });
    expect(posted.status, JSON.stringify(posted.body)).toBe(200);
    const anna = await user(0, "anna");
    const annaC = await clientOf(anna);
    const e = await decrypted(annaC, roomId, `URGENT: ${text}`);
    await annaC.sendReadReceipt(e);
    const shown = await waitUntil(async () => {
      const posts = (await consoleCall("GET", `/channels/${enc(roomId)}/urgent`)).body.posts as {
        event_id: string;
        read: { users: string[] };
      }[];
      const p = posts.find((x) => x.event_id === posted.body.event_id);
      return p?.read.users.includes(anna.userId) ? p : undefined;
    }, "the console shows Anna read the console's urgent post");
    expect(shown).toMatchObject({ urgent: true, members: 2, acknowledged: { count: 0 } });
    // The Channels page (in Dutch) shows the same counts.
    chromium = await startChromium("channels");
    const page = await chromium.page("nl-NL");
    await pageSignIn(page, org(0), boss.localpart, boss.password);
    await openSection(page, "channels");
    const row = `tr[data-event="${String(posted.body.event_id)}"]`;
    await page.waitForSelector(`${row} td.read strong`);
    expect(await textOf(page, `${row} td.read strong`)).toBe("1");
    expect(await textOf(page, `${row} td.acknowledged strong`)).toBe("0");
    expect(await textOf(page, "h1")).toBe("Berichtenkanalen");
    expect(await capture(chromium, page, "channels")).toEqual([]);
    await page.close();
  });

  it("invites a clinician verified later within one reconciliation cycle", async () => {
    const vera = await user(0, "vera");
    const verified = await api(vera, "proxy", "POST", "/_medmesh/identity/v1/verification", {
      registry: "BIG",
      number: VERA.number,
      claimed_name: "V. Visser",
    });
    expect(verified.body, JSON.stringify(verified.body)).toMatchObject({ status: "verified" });
    // A change of A's verified clinicians starts a cycle at once (no cycle is asked for here).
    await waitUntil(
      async () => (await membership(0, roomId, vera.userId)) === "invite",
      "the channel bot invites Vera",
      15_000,
    );
  });

  it("answers a member's leave from a mandatory channel with a new invite, on every path", async () => {
    const anna = await user(0, "anna");
    const piet = await user(1, "piet");
    for (const [u, via, i] of [
      [anna, "proxy", 0],
      [anna, "synapse", 0],
      [piet, "proxy", 1],
      [piet, "synapse", 1],
    ] as const) {
      const left = await api(u, via, "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/leave`, {});
      expect(left.status, JSON.stringify(left.body)).toBe(200);
      await waitUntil(
        async () => (await membership(0, roomId, u.userId)) === "invite",
        `${u.userId} is invited again after leaving via ${via}`,
      );
      const back = await api(
        u,
        via,
        "POST",
        `/_matrix/client/v3/join/${enc(roomId)}?server_name=${enc(org(0).serverName)}`,
        {},
      );
      expect(back.status, JSON.stringify(back.body)).toBe(200);
      await waitUntil(
        async () => (await membership(0, roomId, u.userId)) === "join",
        `${u.userId} is back (${String(i)})`,
      );
    }
  });
});
