import { readFileSync } from "node:fs";
import { EventTimeline } from "matrix-js-sdk";
import { describe, expect, it } from "vitest";
import { loadTimDriverOpenApi, UNIMPLEMENTED } from "@medmesh/tim-driver";
import {
  OpenApiContract,
  timDrivers,
  timOrganisations,
  useTestNetwork,
  waitUntil,
  type TimDriverHandle,
} from "../harness/index.ts";

/**
 * Every operation of gematik's TiMessengerTestTreiber.yaml, called on a real driver in front of a
 * real MedMesh homeserver: each answer is checked against the document, the implemented operations
 * are all exercised, and the rest answer 501 (the list in tim-driver/src/unimplemented.ts).
 */
const contract = new OpenApiContract(loadTimDriverOpenApi() as object);
const covered = new Set<string>();

async function call(
  d: TimDriverHandle,
  method: string,
  path: string,
  body?: unknown,
  raw?: { type: string; data: Buffer },
) {
  const res = raw
    ? await fetch(new URL(path, d.driver.url), {
        method,
        headers: { "content-type": raw.type },
        body: raw.data,
      })
    : await d.call(method, path, body);
  const op = contract.match(method, path);
  if (!op) throw new Error(`${method} ${path} is not an operation of the document`);
  await contract.check(op, res.clone());
  covered.add(op);
  return res;
}

// The caller names the body shape it expects (the contract check has validated it against the document).
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
async function json<T>(
  d: TimDriverHandle,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const res = await call(d, method, path, body);
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

describe("TI-M test driver: contract", () => {
  const net = useTestNetwork({
    name: "tim-driver-contract",
    organisations: 1,
    organisationSettingsFor: timOrganisations(["tim-pro"]),
  });
  let d: TimDriverHandle;

  it("answers GET / with the homeserver and client info, and lists its devices", async () => {
    [d] = timDrivers(net()) as [TimDriverHandle];
    const info = await json<{ homeserver: string; clientInfo: { isPro: boolean } }>(d, "GET", "/");
    expect(info.status).toBe(200);
    expect(info.body.homeserver).toBe(d.org.serverName);
    expect(info.body.clientInfo.isPro).toBe(true);
    // The runner lists the driver in network.json, where the suite's combine items are taken from.
    const description = JSON.parse(readFileSync(net().network.descriptionFile, "utf8")) as {
      organisations: { tim_driver_url?: string }[];
    };
    expect(description.organisations[0]?.tim_driver_url).toBe(d.driver.url);
    const devices = await json<{ devices: { deviceId: number; deviceStatus: string }[] }>(
      d,
      "GET",
      "/devices",
    );
    expect(devices.body.devices.map((x) => x.deviceStatus)).toEqual(["free", "free", "free"]);
  });

  it("claims, refuses unclaimed use, renews and unclaims devices", async () => {
    expect((await json(d, "GET", "/devices/1/account")).status).toBe(403);
    expect(
      (await json(d, "POST", "/devices/1/claim", { claimerName: "contract", claimFor: 10 })).status,
    ).toBe(400);
    expect(
      (await json(d, "POST", "/devices/9/claim", { claimerName: "contract", claimFor: 60 })).status,
    ).toBe(404);
    for (const id of [1, 2, 3]) {
      const claimed = await json<{ deviceStatus: string; claimedUntil: string }>(
        d,
        "POST",
        `/devices/${String(id)}/claim`,
        {
          claimerName: "contract",
          claimFor: 120,
        },
      );
      expect(claimed.body.deviceStatus).toBe("claimed");
    }
    expect(
      (await json(d, "POST", "/devices/1/claim", { claimerName: "someone else", claimFor: 60 })).status,
    ).toBe(400);
    expect((await json(d, "GET", "/devices/1/account")).status).toBe(401);
    const freed = await json<{ deviceStatus: string }>(d, "POST", "/devices/3/unclaim");
    expect(freed.body.deviceStatus).toBe("free");
    expect((await json(d, "POST", "/devices/3/unclaim")).status).toBe(400);
  });

  it("logs in (own account, another account, a wrong password) and out", async () => {
    const own = await json<{ mxid: string; username: string; password: string }>(
      d,
      "POST",
      "/devices/1/login",
      {},
    );
    expect(own.status).toBe(200);
    expect(own.body.mxid.endsWith(`:${d.org.serverName}`)).toBe(true);
    const second = await json<{ mxid: string; username: string; password: string }>(
      d,
      "POST",
      "/devices/2/login",
    );
    expect(
      (await json(d, "POST", "/devices/2/login", { username: second.body.username, password: "wrong" }))
        .status,
    ).toBe(401);
    // Device 2 now is a second device of device 1's account.
    const other = await json<{ mxid: string }>(d, "POST", "/devices/2/login", {
      authStage: "basicAuth",
      username: own.body.username,
      password: own.body.password,
    });
    expect(other.body.mxid).toBe(own.body.mxid);
    expect((await json<{ mxid: string }>(d, "GET", "/devices/2/account")).body.mxid).toBe(own.body.mxid);
    expect((await json(d, "POST", "/devices/2/logout")).status).toBe(200);
    expect((await json(d, "GET", "/devices/2/account")).status).toBe(401);
    expect((await json(d, "POST", "/devices/2/login", {})).status).toBe(200);
  });

  it("exports the recovery key, and imports it on a second device", async () => {
    const exported = await json<{ mxId: { mxid: string }; key: string }>(d, "GET", "/devices/1/account/key");
    expect(exported.status).toBe(200);
    expect(exported.body.key.length).toBeGreaterThan(40);
    const imported = await json(d, "POST", "/devices/1/account/key", { key: exported.body.key });
    expect(imported.status).toBe(204);
    expect((await json(d, "POST", "/devices/1/account/key", { key: "not a key" })).status).toBe(400);
  });

  it("searches, creates and changes rooms, invites, joins, leaves and forgets", async () => {
    const b = (await json<{ mxid: string; displayName: string }>(d, "GET", "/devices/2/account")).body;
    const search = await json<{ searchResults: { mxId: string }[] }>(
      d,
      "GET",
      `/devices/1/homeserver/search?mxId=${encodeURIComponent(b.mxid)}`,
    );
    expect(search.status).toBe(200);
    const created = await json<{
      roomId: string;
      name: string;
      isEncrypted: boolean;
      members: { mxid: string; membershipState: string }[];
    }>(d, "POST", "/devices/1/rooms", {
      name: "contract room",
      theme: "testing",
      historyVisibility: "shared",
      invitedMembers: [{ mxid: b.mxid }],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body.isEncrypted).toBe(true);
    expect(created.body.members).toContainEqual({ mxid: b.mxid, membershipState: "invite" });
    const roomId = encodeURIComponent(created.body.roomId);
    await waitUntil(
      async () =>
        (await json<{ roomId: string }[]>(d, "GET", "/devices/2/rooms")).body.some(
          (r) => r.roomId === created.body.roomId,
        ),
      "the invite in device 2's room list",
    );
    const joined = await json<{ members: { mxid: string; membershipState: string }[] }>(
      d,
      "POST",
      `/devices/2/rooms/${roomId}/join`,
    );
    expect(joined.body.members).toContainEqual({ mxid: b.mxid, membershipState: "join" });
    const updated = await json<{ name: string; theme: string }>(d, "PUT", `/devices/1/rooms/${roomId}`, {
      name: "renamed",
      theme: "new theme",
    });
    expect(updated.body).toMatchObject({ name: "renamed", theme: "new theme" });
    expect((await json<{ name: string }>(d, "GET", `/devices/1/rooms/${roomId}`)).body.name).toBe("renamed");
    const state = await json<{ type: string }[]>(d, "GET", `/devices/1/rooms/${roomId}/state`);
    expect(state.body.map((s) => s.type)).toContain("m.room.encryption");
    const third = await json(d, "POST", `/devices/1/rooms/${roomId}/invite`, [
      { mxid: "@nobody:not-a-server.invalid" },
    ]);
    expect(third.status).toBeGreaterThanOrEqual(400);
    expect((await json(d, "GET", "/devices/1/rooms/!unknown:x")).status).toBe(404);

    const sent = await json<{ messageId: string; body: string; author: string }>(
      d,
      "POST",
      `/devices/1/rooms/${roomId}/messages`,
      {
        msgtype: "m.text",
        body: "hello contract",
      },
    );
    expect(sent.body).toMatchObject({ body: "hello contract" });
    const msgId = encodeURIComponent(sent.body.messageId);
    expect(
      (await json<{ body: string }>(d, "GET", `/devices/1/rooms/${roomId}/messages/${msgId}`)).body.body,
    ).toBe("hello contract");
    const edited = await json<{ body: string; lastUpdated?: string }>(
      d,
      "PUT",
      `/devices/1/rooms/${roomId}/messages/${msgId}`,
      {
        msgtype: "m.text",
        body: "edited",
      },
    );
    expect(edited.body.body).toBe("edited");
    expect(edited.body.lastUpdated).toBeDefined();
    expect(
      (await json(d, "PUT", `/devices/2/rooms/${roomId}/messages/${msgId}`, { msgtype: "m.text", body: "x" }))
        .status,
    ).toBe(403);
    const second = await json<{ messageId: string }>(d, "POST", `/devices/1/rooms/${roomId}/messages`, {
      msgtype: "m.text",
      body: "two",
    });
    expect((await json(d, "DELETE", `/devices/1/rooms/${roomId}/messages/${msgId}`)).status).toBe(204);
    expect(
      (
        await json(
          d,
          "DELETE",
          `/devices/1/rooms/${roomId}/messages/${encodeURIComponent(second.body.messageId)}/replace`,
        )
      ).status,
    ).toBe(204);
    expect((await json<unknown[]>(d, "GET", `/devices/1/rooms/${roomId}/messages`)).body).toEqual([]);
    expect((await json(d, "GET", `/devices/1/rooms/${roomId}/messages/${msgId}`)).status).toBe(404);

    const direct = await json<{ room_id: string }>(d, "POST", "/devices/1/sendMessage", {
      toAccount: b.mxid,
      msgtype: "m.text",
      body: "dm",
    });
    expect(direct.status, JSON.stringify(direct.body)).toBe(200);
    const again = await json<{ room_id: string }>(d, "POST", "/devices/1/sendMessage", {
      toAccount: b.mxid,
      msgtype: "m.text",
      body: "dm 2",
    });
    expect(again.body.room_id).toBe(direct.body.room_id);

    const left = await json<{ members: { mxid: string; membershipState: string }[] }>(
      d,
      "POST",
      `/devices/2/rooms/${roomId}/leave`,
    );
    expect(left.body.members).toContainEqual({ mxid: b.mxid, membershipState: "leave" });
    expect((await json(d, "DELETE", `/devices/2/rooms/${roomId}`)).status).toBe(204);
  });

  it("lists a room's messages after a gappy sync reset the timeline during a back-pagination", async () => {
    const created = await json<{ roomId: string }>(d, "POST", "/devices/1/rooms", { name: "gappy" });
    const roomId = encodeURIComponent(created.body.roomId);
    for (const body of ["first", "second"])
      await json(d, "POST", `/devices/1/rooms/${roomId}/messages`, { msgtype: "m.text", body });
    const client = d.driver.pool.devices[0]?.session?.client;
    const room = client?.getRoom(created.body.roomId);
    if (!client || !room) throw new Error("device 1 has no client or no room");
    // What the sync does on a limited timeline, while a back-pagination of the old one is in flight.
    const live = room.getLiveTimeline();
    const token = live.getPaginationToken(EventTimeline.BACKWARDS);
    const inFlight = client.paginateEventTimeline(live, { backwards: true, limit: 250 });
    room.resetLiveTimeline(token, null);
    await inFlight;
    // Before: this listing paginated the new live timeline for ever (the events were all in the old one).
    const listed = await json<{ body: string }[]>(d, "GET", `/devices/1/rooms/${roomId}/messages`);
    expect(listed.body.map((m) => m.body)).toEqual(["first", "second"]);
  }, 30_000);

  it("uploads encrypted media and downloads it byte-identical", async () => {
    const data = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 251));
    const up = await call(d, "POST", "/devices/1/media", undefined, { type: "application/pdf", data });
    expect(up.status).toBe(201);
    const { fileId } = (await up.json()) as { fileId: string };
    for (const path of [`/devices/1/media/${fileId}`, `/devices/1/media/authenticated/${fileId}`]) {
      const down = await call(d, "GET", path);
      expect(Buffer.from(await down.arrayBuffer()).equals(data)).toBe(true);
    }
    expect((await call(d, "GET", "/devices/1/media/unknown")).status).toBe(404);
  });

  it("sets the authorization mode and the allowed and blocked users", async () => {
    expect((await json<string>(d, "GET", "/devices/1/authorizationMode")).body).toBe("AllowAll");
    expect((await json(d, "GET", "/devices/1/allowedUsers")).status).toBe(403);
    const blocked = await json<{ mxids: { mxid: string }[] }>(d, "POST", "/devices/1/blockedUsers", {
      mxids: [{ mxid: "@blocked:example.org" }],
      serverNames: [{ serverName: "bad.example.org" }],
      groupNames: [],
    });
    expect(blocked.body.mxids).toEqual([{ mxid: "@blocked:example.org" }]);
    expect(
      (await json<{ serverNames: unknown[] }>(d, "GET", "/devices/1/blockedUsers")).body.serverNames,
    ).toHaveLength(1);
    const removed = await json(d, "DELETE", "/devices/1/blockedUsers", {
      mxids: [{ mxid: "@blocked:example.org" }],
      serverNames: [],
      groupNames: [],
    });
    expect(removed.status).toBe(204);
    const after = await json<{ mxids: unknown[] }>(d, "GET", "/devices/1/blockedUsers");
    expect(after.body).toMatchObject({ mxids: [], serverNames: [{ serverName: "bad.example.org" }] });
    expect((await json<string>(d, "POST", "/devices/1/authorizationMode", "BlockAll")).body).toBe("BlockAll");
    expect((await json(d, "GET", "/devices/1/blockedUsers")).status).toBe(403);
    const allowed = await json<{ groupNames: string[] }>(d, "POST", "/devices/1/allowedUsers", {
      mxids: [],
      serverNames: [],
      groupNames: ["isInsuredPerson"],
    });
    expect(allowed.body.groupNames).toEqual(["isInsuredPerson"]);
    expect((await json(d, "GET", "/devices/1/allowedUsers")).status).toBe(200);
    expect(
      (
        await json(d, "DELETE", "/devices/1/allowedUsers", {
          mxids: [],
          serverNames: [],
          groupNames: ["isInsuredPerson"],
        })
      ).status,
    ).toBe(204);
    expect((await json(d, "POST", "/devices/1/authorizationMode", "Sometimes")).status).toBe(400);
  });

  it("cleans up: every device account in no room, permission config back to the default", async () => {
    expect((await json(d, "POST", "/")).status).toBe(200);
    expect((await json(d, "GET", "/devices/1/rooms")).status).toBe(401);
    for (const id of [1, 2]) {
      await json(d, "POST", `/devices/${String(id)}/login`, {});
      expect((await json<unknown[]>(d, "GET", `/devices/${String(id)}/rooms`)).body).toEqual([]);
    }
    expect((await json<string>(d, "GET", "/devices/1/authorizationMode")).body).toBe("AllowAll");
  });

  it("answers 501 for the operations it does not implement, and covers all the others", async () => {
    for (const op of UNIMPLEMENTED) {
      const [method = "", template = ""] = op.split(" ");
      const path = template.replace(/\{deviceId\}/, "1").replace(/\{[^}]+\}/g, "x");
      const res = await call(d, method, path, method === "GET" || method === "DELETE" ? undefined : {});
      expect(res.status, op).toBe(501);
    }
    const missing = contract.operations().filter((op) => !covered.has(op));
    expect(missing).toEqual([]);
    expect(contract.operations()).toHaveLength(62);
  });
});
