import { EventType } from "matrix-js-sdk";
import { describe, expect, it } from "vitest";
import {
  timDrivers,
  timOrganisations,
  useTestNetwork,
  waitUntil,
  withSynapseDb,
  type TimDriverHandle,
} from "../harness/index.ts";

/**
 * Scenarios written from the TI-M test driver API's descriptions, run through two drivers in
 * front of two federating MedMesh organisations (real Synapse, Rust crypto on every device).
 */
interface Message {
  messageId: string;
  body: string;
  author: string;
  room_id: string;
}
interface Room {
  roomId: string;
  members: { mxid: string; membershipState: string }[];
}

// The caller names the body shape it expects (the contract check has validated it against the document).
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
async function json<T>(
  d: TimDriverHandle,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: T }> {
  const res = await d.call(method, path, body);
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as T };
}

async function ok<T>(d: TimDriverHandle, method: string, path: string, body?: unknown): Promise<T> {
  const res = await json<T>(d, method, path, body);
  if (res.status >= 300)
    throw new Error(`${method} ${path} answered ${String(res.status)}: ${JSON.stringify(res.body)}`);
  return res.body;
}

const bodies = async (d: TimDriverHandle, device: number, roomId: string): Promise<string[]> =>
  (
    await ok<Message[]>(d, "GET", `/devices/${String(device)}/rooms/${encodeURIComponent(roomId)}/messages`)
  ).map((m) => m.body);

async function waitForBodies(
  d: TimDriverHandle,
  device: number,
  roomId: string,
  want: string[],
  what: string,
) {
  await waitUntil(async () => {
    const got = await bodies(d, device, roomId);
    return want.every((w) => got.includes(w)) ? got : undefined;
  }, what);
}

async function joinInvite(d: TimDriverHandle, device: number, roomId: string): Promise<void> {
  await waitUntil(
    async () =>
      (await ok<Room[]>(d, "GET", `/devices/${String(device)}/rooms`)).some((r) => r.roomId === roomId),
    `the invite to ${roomId} on device ${String(device)}`,
  );
  await ok(d, "POST", `/devices/${String(device)}/rooms/${encodeURIComponent(roomId)}/join`);
}

describe("TI-M test driver: scenarios across two organisations", () => {
  const net = useTestNetwork({
    name: "tim-scenarios",
    organisations: 2,
    organisationSettingsFor: timOrganisations(["tim-pro", "tim-pro"]),
  });
  const A = () => net().orgs[0]!;
  let a: TimDriverHandle;
  let b: TimDriverHandle;
  const mxid: Record<string, string> = {};

  async function start(): Promise<void> {
    [a, b] = timDrivers(net()) as [TimDriverHandle, TimDriverHandle];
    for (const [name, d] of [
      ["a", a],
      ["b", b],
    ] as const) {
      await ok(d, "POST", "/");
      for (const id of [1, 2, 3]) {
        await ok(d, "POST", `/devices/${String(id)}/claim`, { claimerName: "scenarios", claimFor: 600 });
        if (id < 3)
          mxid[`${name}${String(id)}`] = (
            await ok<{ mxid: string }>(d, "POST", `/devices/${String(id)}/login`, {})
          ).mxid;
      }
    }
  }

  it("a direct message across organisations is decrypted by the receiver", async () => {
    await start();
    const sent = await ok<Message>(a, "POST", "/devices/1/sendMessage", {
      toAccount: mxid.b1,
      msgtype: "m.text",
      body: "direct across organisations",
    });
    await joinInvite(b, 1, sent.room_id);
    await waitForBodies(b, 1, sent.room_id, ["direct across organisations"], "the direct message on org B");
    // The reply finds the same direct room instead of making a second one.
    const reply = await ok<Message>(b, "POST", "/devices/1/sendMessage", {
      toAccount: mxid.a1,
      msgtype: "m.text",
      body: "reply",
    });
    // What b1's client knew when it chose (a second direct room was seen under load).
    const b1Client = b.driver.pool.devices[0]?.session?.client;
    const mine = b1Client?.getRoom(sent.room_id)?.getMember(mxid.b1!)?.events.member;
    const seen = JSON.stringify({
      direct: b1Client?.getAccountData(EventType.Direct)?.getContent(),
      member: mine?.getContent(),
      prev: mine?.getPrevContent(),
      unsigned: mine?.getUnsigned(),
      a1: b1Client?.getRoom(sent.room_id)?.getMember(mxid.a1!)?.membership,
    });
    expect(reply.room_id, seen).toBe(sent.room_id);
    await waitForBodies(a, 1, sent.room_id, ["direct across organisations", "reply"], "the reply on org A");
  });

  it("a second device and a re-logged-in device read the history", async () => {
    const room = await ok<Room>(a, "POST", "/devices/1/rooms", {
      name: "history",
      invitedMembers: [{ mxid: mxid.b1 }],
    });
    await joinInvite(b, 1, room.roomId);
    await ok(a, "POST", `/devices/1/rooms/${encodeURIComponent(room.roomId)}/messages`, {
      msgtype: "m.text",
      body: "before",
    });
    await ok(b, "POST", `/devices/1/rooms/${encodeURIComponent(room.roomId)}/messages`, {
      msgtype: "m.text",
      body: "from b",
    });
    await waitForBodies(a, 1, room.roomId, ["before", "from b"], "both messages on device a1");
    // Device 3 of org B logs in as b1: a second device of that account.
    const b1 = await ok<{ username: string; password: string }>(b, "GET", "/devices/1/account");
    await ok(b, "POST", "/devices/3/login", {
      authStage: "basicAuth",
      username: b1.username,
      password: b1.password,
    });
    await waitForBodies(b, 3, room.roomId, ["before", "from b"], "the history on b1's second device");
    // a1 logs out and in again: a new Matrix device, which gets the keys from the key backup.
    await ok(a, "POST", "/devices/1/logout");
    await ok(a, "POST", "/devices/1/login", {});
    await waitForBodies(a, 1, room.roomId, ["before", "from b"], "the history on a1 after logging in again");
  });

  it("BlockAll with a user exception is enforced by the server: 403 for others, nothing for the invitee", async () => {
    expect(await ok<string>(b, "POST", "/devices/2/authorizationMode", "BlockAll")).toBe("BlockAll");
    await ok(b, "POST", "/devices/2/allowedUsers", {
      mxids: [{ mxid: mxid.a1 }],
      serverNames: [],
      groupNames: [],
    });
    const blocked = await ok<Room>(a, "POST", "/devices/2/rooms", { name: "blocked" });
    const refused = await json<{ errorCode: string }>(
      a,
      "POST",
      `/devices/2/rooms/${encodeURIComponent(blocked.roomId)}/invite`,
      [{ mxid: mxid.b2 }],
    );
    expect(refused.status).toBe(403);
    expect(refused.body.errorCode).toBe("M_FORBIDDEN");
    const allowed = await ok<Room>(a, "POST", "/devices/1/rooms", {
      name: "allowed",
      invitedMembers: [{ mxid: mxid.b2 }],
    });
    await joinInvite(b, 2, allowed.roomId);
    // For 6 s after the refusal, b2 sees no trace of the refused room.
    const until = Date.now() + 6000;
    while (Date.now() < until) {
      const rooms = await ok<Room[]>(b, "GET", "/devices/2/rooms");
      expect(rooms.map((r) => r.roomId)).not.toContain(blocked.roomId);
      await new Promise((r) => setTimeout(r, 500));
    }
  });

  it("an edited message, then deleted by redaction and by replace, disappears from every member's list", async () => {
    const room = await ok<Room>(a, "POST", "/devices/1/rooms", {
      name: "edits",
      invitedMembers: [{ mxid: mxid.b1 }],
    });
    const roomId = encodeURIComponent(room.roomId);
    await joinInvite(b, 1, room.roomId);
    const one = await ok<Message>(a, "POST", `/devices/1/rooms/${roomId}/messages`, {
      msgtype: "m.text",
      body: "first",
    });
    const two = await ok<Message>(a, "POST", `/devices/1/rooms/${roomId}/messages`, {
      msgtype: "m.text",
      body: "second",
    });
    await ok(a, "PUT", `/devices/1/rooms/${roomId}/messages/${encodeURIComponent(one.messageId)}`, {
      msgtype: "m.text",
      body: "first, edited",
    });
    await waitForBodies(b, 1, room.roomId, ["first, edited", "second"], "the edit on org B");
    expect(await bodies(b, 1, room.roomId)).not.toContain("first");
    await ok(a, "DELETE", `/devices/1/rooms/${roomId}/messages/${encodeURIComponent(one.messageId)}`);
    await ok(a, "DELETE", `/devices/1/rooms/${roomId}/messages/${encodeURIComponent(two.messageId)}/replace`);
    for (const [d, device] of [
      [a, 1],
      [b, 1],
    ] as const) {
      await waitUntil(
        async () => ((await bodies(d, device, room.roomId)).length === 0 ? true : undefined),
        "an empty list",
      );
    }
  });

  it("a restarted driver goes on with the same devices and their keys; a new login after it reads the history", async () => {
    const room = await ok<Room>(a, "POST", "/devices/1/rooms", {
      name: "restart",
      invitedMembers: [{ mxid: mxid.b1 }],
    });
    const roomId = encodeURIComponent(room.roomId);
    await joinInvite(b, 1, room.roomId);
    await ok(a, "POST", `/devices/1/rooms/${roomId}/messages`, { msgtype: "m.text", body: "before restart" });
    await waitForBodies(b, 1, room.roomId, ["before restart"], "the message on org B");
    const deviceId = a.driver.pool.devices[0]?.session?.login.deviceId;
    expect(deviceId).toBeDefined();

    // Stopped, crypto stores dropped from memory, started again from its data_dir.
    await a.driver.restart();
    expect(a.driver.pool.devices[0]?.session?.login.deviceId).toBe(deviceId);
    for (const id of [1, 2, 3])
      // claims are leases of the running driver, not kept
      await ok(a, "POST", `/devices/${String(id)}/claim`, { claimerName: "scenarios", claimFor: 600 });
    // The same Olm identity: B's new room key reaches it, and the old one is still there.
    await ok(b, "POST", `/devices/1/rooms/${roomId}/messages`, { msgtype: "m.text", body: "after restart" });
    await waitForBodies(
      a,
      1,
      room.roomId,
      ["before restart", "after restart"],
      "both messages on a1 after the restart",
    );
    // The recovery key survived too: a new device of a1 opens the key backup with it.
    await ok(a, "POST", "/devices/1/logout");
    await ok(a, "POST", "/devices/1/login", {});
    expect(a.driver.pool.devices[0]?.session?.login.deviceId).not.toBe(deviceId);
    await waitForBodies(
      a,
      1,
      room.roomId,
      ["before restart", "after restart"],
      "the history on a1's new device",
    );
  });

  it("what is sent while an account has no device reaches its next device (dehydrated device, MSC3814)", async () => {
    const room = await ok<Room>(a, "POST", "/devices/1/rooms", {
      name: "away",
      invitedMembers: [{ mxid: mxid.b1 }],
    });
    await joinInvite(b, 1, room.roomId);
    // a1 logs out: its only device gone, the room key of the next message goes to its dehydrated
    // device alone — no device of a1 receives it, so a1's key backup never has it.
    const gone = a.driver.pool.devices[0]?.session?.login.deviceId;
    await ok(a, "POST", "/devices/1/logout");
    const dehydrated = await withSynapseDb(A(), async (db) =>
      (
        await db.all<{ device_id: string }>("SELECT device_id FROM dehydrated_devices WHERE user_id = ?", [
          mxid.a1!,
        ])
      ).map((r) => r.device_id),
    );
    expect(dehydrated).toHaveLength(1);
    const toDehydrated = () =>
      withSynapseDb(A(), async (db) =>
        Number(
          (
            await db.all<{ n: number | string }>(
              "SELECT COUNT(*) AS n FROM device_inbox WHERE user_id = ? AND device_id = ?",
              [mxid.a1!, dehydrated[0]!],
            )
          )[0]?.n ?? 0,
        ),
      );
    const before = await toDehydrated();
    // b1 encrypts for the devices of a1 its client knows: wait until that list has lost the device
    // that logged out and holds a1's dehydrated device (B's server hears of the change over
    // federation).
    const b1Crypto = b.driver.pool.devices[0]?.session?.client.getCrypto();
    await waitUntil(async () => {
      const devices = (await b1Crypto?.getUserDeviceInfo([mxid.a1!], true))?.get(mxid.a1!);
      return devices?.has(dehydrated[0]!) && !devices.has(gone ?? "") ? true : undefined;
    }, "b1's client knowing only a1's dehydrated device");
    await ok(b, "POST", `/devices/1/rooms/${encodeURIComponent(room.roomId)}/messages`, {
      msgtype: "m.text",
      body: "while away",
    });
    // The room key travels to A's server as a to-device message for the dehydrated device; a login
    // before it is there would rehydrate without it (and replace the dehydrated device).
    await waitUntil(
      async () => ((await toDehydrated()) > before ? true : undefined),
      "the room key on A's server, for a1's dehydrated device",
    );
    await ok(a, "POST", "/devices/1/login", {});
    await waitForBodies(a, 1, room.roomId, ["while away"], "the message sent while a1 had no device");
  });

  it("cleanup leaves every device account in no room", async () => {
    for (const d of [a, b]) {
      await ok(d, "POST", "/");
      for (const id of [1, 2, 3]) {
        await ok(d, "POST", `/devices/${String(id)}/login`, {});
        expect(await ok<Room[]>(d, "GET", `/devices/${String(id)}/rooms`)).toEqual([]);
        expect(await ok<string>(d, "GET", `/devices/${String(id)}/authorizationMode`)).toBe("AllowAll");
      }
    }
  });
});
