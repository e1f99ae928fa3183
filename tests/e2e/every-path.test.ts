import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createLogger, createSynapseAdmin, type SynapseAdmin } from "@medmesh/common";
import { REPO_ROOT, type RunningOrganisation } from "@medmesh/deploy";
import { start as startPolicyModule } from "@medmesh/policy-module";
import { federationClientOf } from "../harness/federation-client.ts";
import { namedUsers, OpenApiContract, useTestNetwork, waitUntil, type TestUser } from "../harness/index.ts";

// One row per (rule × path): each row does the forbidden thing one way and asserts the refusal and
// that Synapse stored nothing; its control does the allowed thing the same way and must succeed,
// so a refusal can only come from the rule. A and B are trusted; C runs MedMesh but is unlisted.
const net = useTestNetwork({
  name: "every-path",
  organisations: 3,
  trust: { unlisted: ["org-c"], refresh_seconds: 1 },
  verifiedClinicians: {
    0: [
      { localpart: "anna", display_name: "Dr. Anna de Vries", profession: "physician" },
      { localpart: "doc", display_name: "Dr. Dirk Okke", profession: "physician" },
    ],
  },
});

const org = (i: number): RunningOrganisation => net().orgs[i]!;
const user = namedUsers(net);
const admins = new Map<number, SynapseAdmin>();
const admin = (i: number): SynapseAdmin => {
  let a = admins.get(i);
  if (!a) {
    a = createSynapseAdmin({ url: org(i).synapseUrl, registrationSharedSecret: org(i).registrationSecret });
    admins.set(i, a);
  }
  return a;
};

interface Answer {
  status: number;
  body: Record<string, unknown>;
}
/** Through the organisation's proxy (as clients reach it), or straight to Synapse (no proxy at all). */
type Via = "proxy" | "synapse";
async function api(u: TestUser, via: Via, method: string, path: string, body?: unknown): Promise<Answer> {
  const base = via === "proxy" ? u.org.clientUrl : u.org.synapseUrl;
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${u.accessToken}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}
const enc = encodeURIComponent;

async function newRoom(u: TestUser, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await api(u, "proxy", "POST", "/_matrix/client/v3/createRoom", {
    preset: "private_chat",
    ...extra,
  });
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  return r.body.room_id as string;
}

/** What Synapse holds about a user in a room: membership from the room's current state. */
async function membership(i: number, roomId: string, userId: string): Promise<string | undefined> {
  const state = await admin(i).request<{
    state: { type: string; state_key: string; content: { membership?: string } }[];
  }>("GET", `/_synapse/admin/v1/rooms/${enc(roomId)}/state`);
  return state.state.find((e) => e.type === "m.room.member" && e.state_key === userId)?.content.membership;
}
async function invitedRooms(u: TestUser): Promise<string[]> {
  // Synapse answers a repeated initial sync from a cache for minutes: a filter of its own per call.
  const filter = JSON.stringify({ room: { timeline: { limit: 1 + Math.floor(Math.random() * 1e6) } } });
  const r = await api(u, "synapse", "GET", `/_matrix/client/v3/sync?timeout=0&filter=${enc(filter)}`);
  return Object.keys((r.body.rooms as { invite?: Record<string, unknown> } | undefined)?.invite ?? {});
}
async function roomsNamed(i: number, name: string): Promise<number> {
  const r = await admin(i).request<{ total_rooms: number }>(
    "GET",
    `/_synapse/admin/v1/rooms?search_term=${enc(name)}`,
  );
  return r.total_rooms;
}
async function stateOf(
  i: number,
  roomId: string,
  type: string,
): Promise<Record<string, unknown> | undefined> {
  const state = await admin(i).request<{
    state: { type: string; state_key: string; content: Record<string, unknown> }[];
  }>("GET", `/_synapse/admin/v1/rooms/${enc(roomId)}/state`);
  return state.state.find((e) => e.type === type && e.state_key === "")?.content;
}

const expectRefused = (a: Answer, reason: RegExp): void => {
  expect(a.status, JSON.stringify(a.body)).toBe(403);
  expect(a.body.errcode).toBe("M_FORBIDDEN");
  expect(a.body.error).toMatch(reason);
};

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

// --- room state: E2EE, history, join rules, directory ------------------------------------------

describe("every rule on every path: room state", () => {
  const MEGOLM = { algorithm: "m.megolm.v1.aes-sha2" };
  for (const via of ["proxy", "synapse"] as const) {
    for (const version of ["v3", "r0"] as const) {
      it(`E2EE is Megolm × createRoom initial_state (/${version}, via ${via})`, async () => {
        const anna = await user(0, "anna");
        const create = (algorithm: string, name: string) =>
          api(anna, via, "POST", `/_matrix/client/${version}/createRoom`, {
            name,
            initial_state: [{ type: "m.room.encryption", state_key: "", content: { algorithm } }],
          });
        const name = `row-${randomBytes(6).toString("hex")}`;
        expectRefused(await create("m.none.plaintext", name), /end-to-end encrypted with m\.megolm/);
        expect(await roomsNamed(0, name)).toBe(0);
        const ok = await create(MEGOLM.algorithm, `${name}-ok`);
        expect(ok.status, JSON.stringify(ok.body)).toBe(200);
      });

      it(`E2EE is Megolm × a later m.room.encryption state event (/${version}, via ${via})`, async () => {
        const anna = await user(0, "anna");
        const roomId = await newRoom(anna);
        const path = `/_matrix/client/${version}/rooms/${enc(roomId)}/state/m.room.encryption/`;
        expectRefused(await api(anna, via, "PUT", path, { algorithm: "m.none.plaintext" }), /not allowed/);
        expectRefused(await api(anna, via, "PUT", path, {}), /no algorithm is not allowed/);
        expect(await stateOf(0, roomId, "m.room.encryption")).toEqual(MEGOLM);
        const same = await api(anna, via, "PUT", path, { ...MEGOLM, rotation_period_ms: 604800000 });
        expect(same.status, JSON.stringify(same.body)).toBe(200);
      });

      it(`history never world_readable; no public rooms × state API (/${version}, via ${via})`, async () => {
        const anna = await user(0, "anna");
        const roomId = await newRoom(anna);
        const state = (type: string) => `/_matrix/client/${version}/rooms/${enc(roomId)}/state/${type}/`;
        expectRefused(
          await api(anna, via, "PUT", state("m.room.history_visibility"), {
            history_visibility: "world_readable",
          }),
          /world_readable/,
        );
        expectRefused(
          await api(anna, via, "PUT", state("m.room.join_rules"), { join_rule: "public" }),
          /Public rooms/,
        );
        expect(await stateOf(0, roomId, "m.room.history_visibility")).toEqual({
          history_visibility: "shared",
        });
        expect(await stateOf(0, roomId, "m.room.join_rules")).toEqual({ join_rule: "invite" });
        const knock = await api(anna, via, "PUT", state("m.room.join_rules"), { join_rule: "knock" });
        expect(knock.status, JSON.stringify(knock.body)).toBe(200);
      });
    }

    it(`no public rooms × createRoom preset public_chat (via ${via})`, async () => {
      const anna = await user(0, "anna");
      const name = `row-${randomBytes(6).toString("hex")}`;
      const r = await api(anna, via, "POST", "/_matrix/client/v3/createRoom", {
        name,
        preset: "public_chat",
      });
      expectRefused(r, /Public rooms/);
      expect(await roomsNamed(0, name)).toBe(0);
    });

    it(`only verified clinicians list rooms in the directory × PUT /directory/list/room (via ${via})`, async () => {
      const asker = await user(0, "asker");
      const roomId = await newRoom(asker);
      const path = `/_matrix/client/v3/directory/list/room/${enc(roomId)}`;
      expectRefused(await api(asker, via, "PUT", path, { visibility: "public" }), /Only verified clinicians/);
      expect(
        (await admin(0).request<{ public: boolean }>("GET", `/_synapse/admin/v1/rooms/${enc(roomId)}`))
          .public,
      ).toBe(false);
      const anna = await user(0, "anna");
      const annas = await newRoom(anna);
      const ok = await api(anna, via, "PUT", `/_matrix/client/v3/directory/list/room/${enc(annas)}`, {
        visibility: "public",
      });
      expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    });
  }

  it("a room upgrade keeps Megolm (the upgrade passes the same decision point)", async () => {
    const anna = await user(0, "anna");
    const roomId = await newRoom(anna);
    const up = await api(anna, "proxy", "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/upgrade`, {
      new_version: "12",
    });
    expect(up.status, JSON.stringify(up.body)).toBe(200);
    expect(await stateOf(0, up.body.replacement_room as string, "m.room.encryption")).toEqual(MEGOLM);
  });
});

// --- joins to rooms of untrusted servers --------------------------------------------------------

describe("every rule on every path: joins to rooms of servers off the trust list", () => {
  it("refuses joins to C's room by alias, by room ID with and without via, and through the state API", async () => {
    const carl = await user(2, "carl");
    const alias = `untrusted-${randomBytes(4).toString("hex")}`;
    const created = await api(carl, "proxy", "POST", "/_matrix/client/v3/createRoom", {
      preset: "private_chat",
      room_version: "10", // room IDs of version 10 name their server; version 12 IDs do not
      room_alias_name: alias,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(200);
    const roomId = created.body.room_id as string;
    const c = org(2).serverName;
    const asker = await user(0, "asker");
    const rows: [Via, string, string, unknown, RegExp][] = [
      [
        "proxy",
        "POST",
        `/_matrix/client/v3/join/${enc(`#${alias}:${c}`)}`,
        {},
        /not an organisation on this network's trust list/,
      ],
      ["proxy", "POST", `/_matrix/client/v3/join/${enc(roomId)}?via=${enc(c)}`, {}, /trust list/],
      [
        "synapse",
        "POST",
        `/_matrix/client/v3/rooms/${enc(roomId)}/join`,
        {},
        /is not on this network's trust list/,
      ],
      [
        "synapse",
        "PUT",
        `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(asker.userId)}`,
        { membership: "join" },
        /trust list/,
      ],
      ["proxy", "POST", `/_matrix/client/v3/knock/${enc(roomId)}?via=${enc(c)}`, {}, /trust list/],
    ];
    for (const [via, method, path, body, reason] of rows) {
      const r = await api(asker, via, method, path, body);
      expect(r.status, `${method} ${path} via ${via}: ${JSON.stringify(r.body)}`).toBe(403);
      expect(r.body.error, path).toMatch(reason);
    }
    // A's Synapse has no trace of the room.
    await expect(admin(0).request("GET", `/_synapse/admin/v1/rooms/${enc(roomId)}`)).rejects.toThrow(
      /404|not found/i,
    );
  });
});

// --- fail closed --------------------------------------------------------------------------------

describe("every rule on every path: fail closed", () => {
  it("refuses every guarded action, saying why, while the policy module is down; allows again after it starts", async () => {
    const a = org(0);
    const anna = await user(0, "anna");
    const open = await user(0, "open");
    const roomId = await newRoom(anna);
    const index = a.services.findIndex((s) => s.name === "policy-module");
    await a.services[index]!.stop();
    const why = /MedMesh's policy service could not be reached/;
    const guarded = async (): Promise<Answer[]> => [
      await api(anna, "synapse", "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
        user_id: open.userId,
      }),
      await api(anna, "synapse", "POST", "/_matrix/client/v3/createRoom", { preset: "private_chat" }),
      await api(anna, "synapse", "PUT", `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.join_rules/`, {
        join_rule: "knock",
      }),
      await api(anna, "synapse", "PUT", `/_matrix/client/v3/directory/list/room/${enc(roomId)}`, {
        visibility: "public",
      }),
    ];
    try {
      for (const answer of await guarded()) expectRefused(answer, why);
      expect(await membership(0, roomId, open.userId)).toBeUndefined();
      expect(await stateOf(0, roomId, "m.room.join_rules")).toEqual({ join_rule: "invite" });
    } finally {
      a.services[index] = await startPolicyModule(a.policyModule, {
        log: createLogger("policy-module", "warn"),
      });
    }
    for (const answer of await guarded()) expect(answer.status, JSON.stringify(answer.body)).toBe(200);
    expect(await membership(0, roomId, open.userId)).toBe("invite");
  });
});

// --- the decision API itself ---------------------------------------------------------------------

describe("the decision API Synapse's module calls", () => {
  const contract = new OpenApiContract(join(REPO_ROOT, "policy-module", "openapi", "decisions.yaml"));
  const ask = async (check: string, body: unknown, token?: string): Promise<Response> => {
    const res = await fetch(`${org(0).policyModuleUrl}/_medmesh/decide/v1/${check}`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      },
      body: JSON.stringify(body),
    });
    await contract.check("POST /_medmesh/decide/v1/{check}", res.clone());
    return res;
  };

  it("answers well-formed questions with the token, and nothing else", async () => {
    const token = readFileSync(org(0).paths.decisionToken, "utf8").trim();
    const anna = await user(0, "anna");
    const event = (algorithm: string) => ({
      type: "m.room.encryption",
      state_key: "",
      sender: anna.userId,
      room_id: "!r:x",
      content: { algorithm },
    });
    expect(await (await ask("state_event", event("m.megolm.v1.aes-sha2"), token)).json()).toEqual({
      allow: true,
    });
    const refused = (await (await ask("state_event", event("m.none.plaintext"), token)).json()) as Record<
      string,
      unknown
    >;
    expect(refused).toMatchObject({ allow: false, errcode: "M_FORBIDDEN" });
    expect((await ask("state_event", event("m.megolm.v1.aes-sha2"))).status).toBe(401);
    expect((await ask("state_event", event("m.megolm.v1.aes-sha2"), `${token}x`)).status).toBe(401);
    expect((await ask("state_event", { type: 1 }, token)).status).toBe(400);
    expect((await ask("reticulate", {}, token)).status).toBe(404);
  });
});
