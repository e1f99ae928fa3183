import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { federationClientOf } from "../harness/federation-client.ts";
import { everyPathKit, type Answer, type Via } from "../harness/every-path.ts";
import { useTestNetwork, waitUntil, type TestUser } from "../harness/index.ts";

// One row per (rule × path): each row does the forbidden thing one way and asserts the refusal and
// that Synapse stored nothing; its control does the allowed thing the same way and must succeed,
// so a refusal can only come from the rule. Invite permissions here; room state, joins and fail
// closed in every-path-rooms.test.ts.
const net = useTestNetwork({
  name: "every-path-invites",
  organisations: 2,
  verifiedClinicians: {
    0: [
      { localpart: "anna", display_name: "Dr. Anna de Vries", profession: "physician" },
      { localpart: "doc", display_name: "Dr. Dirk Okke", profession: "physician" },
    ],
  },
});
const { org, user, admin, api, newRoom, membership, invitedRooms, roomsNamed, stateOf, expectRefused } =
  everyPathKit(net);
const enc = encodeURIComponent;

// --- invite permissions ----------------------------------------------------------------------

interface InvitePath {
  name: string;
  via: Via;
  /** Invites `invitee` as `inviter`; the returned room is where the invite would be. */
  invite(inviter: TestUser, invitee: string): Promise<{ answer: Answer; roomId?: string; name?: string }>;
}
const invitePaths: InvitePath[] = (["proxy", "synapse"] as const).flatMap((via): InvitePath[] => [
  ...(["v3", "r0"] as const).flatMap((version): InvitePath[] => [
    {
      name: `POST /${version}/rooms/{id}/invite`,
      via,
      async invite(inviter, invitee) {
        const roomId = await newRoom(inviter);
        const answer = await api(
          inviter,
          via,
          "POST",
          `/_matrix/client/${version}/rooms/${enc(roomId)}/invite`,
          {
            user_id: invitee,
          },
        );
        return { answer, roomId };
      },
    },
    {
      name: `PUT /${version}/rooms/{id}/state/m.room.member/{user}`,
      via,
      async invite(inviter, invitee) {
        const roomId = await newRoom(inviter);
        const path = `/_matrix/client/${version}/rooms/${enc(roomId)}/state/m.room.member/${enc(invitee)}`;
        return { answer: await api(inviter, via, "PUT", path, { membership: "invite" }), roomId };
      },
    },
  ]),
  {
    name: "POST /v3/createRoom {invite}",
    via,
    async invite(inviter, invitee) {
      const name = `row-${randomBytes(6).toString("hex")}`;
      const answer = await api(inviter, via, "POST", "/_matrix/client/v3/createRoom", {
        preset: "private_chat",
        name,
        invite: [invitee],
      });
      return { answer, name, ...(answer.status === 200 ? { roomId: answer.body.room_id as string } : {}) };
    },
  },
]);

describe("every rule on every path: invite permissions", () => {
  const rules = [
    {
      rule: "the invitee's permission config (block all)",
      inviter: () => user(0, "asker"),
      refusedInvitee: () => blocker(),
      allowedInvitee: async () => (await user(0, "open")).userId,
      reason: /does not accept invites from/,
    },
    {
      rule: "the organisation default (unverified → verified clinician)",
      inviter: () => user(0, "asker"),
      refusedInvitee: () => user(0, "doc"),
      allowedInvitee: async () => (await user(0, "open")).userId,
      reason: /is a verified clinician and accepts invites from .* only after/,
    },
  ];
  for (const r of rules) {
    for (const p of invitePaths) {
      it(`${r.rule} × ${p.name} via ${p.via}`, async () => {
        const inviter = await r.inviter();
        const refusedUser = await r.refusedInvitee();
        const refusedId = refusedUser.userId;
        const refused = await p.invite(inviter, refusedId);
        expectRefused(refused.answer, r.reason);
        if (refused.roomId) expect(await membership(0, refused.roomId, refusedId)).toBeUndefined();
        if (refused.name) expect(await roomsNamed(0, refused.name)).toBe(0);
        if (refused.roomId) expect(await invitedRooms(refusedUser)).not.toContain(refused.roomId);

        const allowedId = await r.allowedInvitee();
        const allowed = await p.invite(inviter, allowedId);
        expect(allowed.answer.status, JSON.stringify(allowed.answer.body)).toBe(200);
        expect(await membership(0, allowed.roomId!, allowedId)).toBe("invite");
      });
    }
  }

  it("the permission config × a federated invite from B's Synapse (/invite sent by B)", async () => {
    const bob = await user(1, "bob");
    const roomId = await newRoom(bob);
    const path = `/_matrix/client/v3/rooms/${enc(roomId)}/invite`;
    const refused = await api(bob, "proxy", "POST", path, { user_id: (await blocker()).userId });
    expectRefused(refused, /does not accept invites from/);
    expect(await invitedRooms(await blocker())).not.toContain(roomId);
    const allowed = await api(bob, "proxy", "POST", path, { user_id: (await user(0, "open")).userId });
    expect(allowed.status, JSON.stringify(allowed.body)).toBe(200);
    await waitUntil(
      async () => (await invitedRooms(await user(0, "open"))).includes(roomId) || undefined,
      "the allowed federated invite reaching A",
    );
  });

  it("the permission config × an appservice acting for a user of its namespace (as_token + user_id)", async () => {
    // The bridge's ghosts act this way; here the policy appservice's own room-admin bot.
    const a = org(0);
    const asToken = a.services.find((s) => s.name === "policy-module")!.registration.as_token;
    const bot = `@medmesh:${a.serverName}`;
    const as = async (method: string, path: string, body: unknown): Promise<Answer> => {
      const url = new URL(path, a.synapseUrl);
      url.searchParams.set("user_id", bot);
      const res = await fetch(url, {
        method,
        headers: { authorization: `Bearer ${asToken}`, "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const created = await as("POST", "/_matrix/client/v3/createRoom", { preset: "private_chat" });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const roomId = created.body.room_id as string;
    const invite = (userId: string) =>
      as("POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, { user_id: userId });
    expectRefused(await invite((await blocker()).userId), /does not accept invites from/);
    expect(await membership(0, roomId, (await blocker()).userId)).toBeUndefined();
    const allowed = await invite((await user(0, "open")).userId);
    expect(allowed.status, JSON.stringify(allowed.body)).toBe(200);
  });

  for (const version of ["v1", "v2"] as const) {
    it(`the permission config × a hand-built federation /${version}/invite signed with B's key`, async () => {
      const b = federationClientOf(org(1));
      const sender = `@mallory:${b.serverName}`;
      const send = async (invitee: string) => {
        const roomId = `!hand-built-${randomBytes(6).toString("hex")}:${b.serverName}`;
        const { event, eventId } = b.inviteEvent({
          roomId,
          sender,
          invitee,
          roomVersion: version === "v1" ? "1" : "10",
        });
        const body = version === "v1" ? event : { room_version: "10", event, invite_room_state: [] };
        const path = `/_matrix/federation/${version}/invite/${enc(roomId)}/${enc(eventId)}`;
        return { roomId, answer: await b.send(org(0), "PUT", path, body) };
      };
      const refused = await send((await blocker()).userId);
      expect(refused.answer.status, JSON.stringify(refused.answer.body)).toBe(403);
      expect((refused.answer.body as { error?: string }).error).toMatch(/does not accept invites from/);
      expect(await invitedRooms(await blocker())).not.toContain(refused.roomId);

      const allowed = await send((await user(0, "open")).userId);
      expect(allowed.answer.status, JSON.stringify(allowed.answer.body)).toBe(200);
      expect(await invitedRooms(await user(0, "open"))).toContain(allowed.roomId);
    });
  }
});

describe("every rule on every path: PDUs inside a federation /send", () => {
  it("the permission config and E2EE × invite and encryption events B's server puts in /send, signed with B's key", async () => {
    // A room homed on B that A takes part in, so A accepts B's PDUs for it.
    const bob = await user(1, "bob");
    const guest = await user(0, "guest");
    const created = await api(bob, "proxy", "POST", "/_matrix/client/v3/createRoom", {
      preset: "private_chat",
      room_version: "10",
      invite: [guest.userId],
    });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const roomId = created.body.room_id as string;
    await waitUntil(
      async () => (await invitedRooms(guest)).includes(roomId) || undefined,
      "the invite reaching A",
    );
    expect(
      (await api(guest, "proxy", "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/join`, {})).status,
    ).toBe(200);
    const b = federationClientOf(org(1));
    const pdu = async (type: string, stateKey: string, content: Record<string, unknown>) => {
      const state = await admin(1).request<{
        state: { type: string; state_key: string; event_id: string }[];
      }>("GET", `/_synapse/admin/v1/rooms/${enc(roomId)}/state`);
      const id = (type: string, key = "") =>
        state.state.find((e) => e.type === type && e.state_key === key)?.event_id;
      const latest = await api(
        bob,
        "synapse",
        "GET",
        `/_matrix/client/v3/rooms/${enc(roomId)}/messages?dir=b&limit=1`,
      );
      const prev = (latest.body.chunk as { event_id: string }[])[0]!.event_id;
      // A must hold that event already (B's room-admin bot may have just written it): otherwise A
      // asks B for it, and B does not hand out events to a server whose PDU references them.
      await waitUntil(
        async () =>
          (await api(guest, "synapse", "GET", `/_matrix/client/v3/rooms/${enc(roomId)}/event/${enc(prev)}`))
            .status === 200 || undefined,
        "A holding B's latest event",
      );
      const { event, eventId } = b.event({
        type,
        state_key: stateKey,
        sender: bob.userId,
        room_id: roomId,
        content,
        depth: 100,
        prev_events: [prev],
        auth_events: [
          id("m.room.create"),
          id("m.room.power_levels"),
          id("m.room.member", bob.userId),
          ...(type === "m.room.member" ? [id("m.room.join_rules")] : []),
        ],
      });
      const txn = `every-path-${randomBytes(4).toString("hex")}`;
      const answer = await b.send(org(0), "PUT", `/_matrix/federation/v1/send/${txn}`, {
        origin: b.serverName,
        origin_server_ts: Date.now(),
        pdus: [event],
      });
      expect(answer.status, JSON.stringify(answer.body)).toBe(200);
      return eventId;
    };
    const invite = { membership: "invite" };
    await pdu("m.room.member", (await blocker()).userId, invite);
    const allowed = await user(0, "open-send");
    await pdu("m.room.member", allowed.userId, invite);
    // The allowed invite is in A's copy of the room; the refused one is not, then or later.
    await waitUntil(
      async () => (await membership(0, roomId, allowed.userId)) === "invite" || undefined,
      "the allowed invite in A's room state",
    );
    expect(await membership(0, roomId, (await blocker()).userId)).toBeUndefined();
    expect(await invitedRooms(await blocker())).not.toContain(roomId);

    // E2EE: a Megolm change is taken into A's state; a switch to another algorithm is not.
    const megolm = { algorithm: "m.megolm.v1.aes-sha2", rotation_period_ms: 3_600_000 };
    await pdu("m.room.encryption", "", megolm);
    await waitUntil(
      async () =>
        (await stateOf(0, roomId, "m.room.encryption"))?.rotation_period_ms === 3_600_000 || undefined,
      "the allowed encryption change in A's room state",
    );
    await pdu("m.room.encryption", "", { algorithm: "m.none.plaintext" });
    expect(await stateOf(0, roomId, "m.room.encryption")).toEqual(megolm);
  });
});

let blockerUser: Promise<TestUser> | undefined;
/** A user of A whose TI-Messenger permission config blocks everyone. */
function blocker(): Promise<TestUser> {
  blockerUser ??= (async () => {
    const u = await user(0, "blocker");
    const type = "de.gematik.tim.account.permissionconfig.pro.v1";
    const r = await api(u, "proxy", "PUT", `/_matrix/client/v3/user/${enc(u.userId)}/account_data/${type}`, {
      defaultSetting: "block all",
    });
    expect(r.status).toBe(200);
    return u;
  })();
  return blockerUser;
}
