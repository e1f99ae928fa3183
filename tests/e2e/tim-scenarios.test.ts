import { describe, expect, it } from "vitest";
import {
  timDrivers,
  timOrganisations,
  useTestNetwork,
  waitUntil,
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
    expect(reply.room_id).toBe(sent.room_id);
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
