import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { REPO_ROOT } from "@medmesh/deploy";
import { describe, expect, it } from "vitest";
import { everyPathKit } from "../harness/every-path.ts";
import { federationClientOf } from "../harness/federation-client.ts";
import { OpenApiContract, useTestNetwork, waitUntil, type TestUser } from "../harness/index.ts";

// Discoverable groups: a room listed in the group directory (state event org.medmesh.group) with
// a profession limit. The rule holds at the knock, the invite and the join, on A's own users and
// other organisations' (the federation gate's clear refusal, and Synapse's module on the PDU).
const net = useTestNetwork({
  name: "groups",
  organisations: 2,
  verifiedClinicians: {
    0: [
      { localpart: "anna", display_name: "Anna Apotheker", profession: "pharmacist" },
      { localpart: "gijs", display_name: "Gijs Huisarts", profession: "general practitioner" },
    ],
    1: [
      { localpart: "piet", display_name: "Piet Pillen", profession: "pharmacist" },
      { localpart: "gerda", display_name: "Gerda Dokter", profession: "general practitioner" },
      { localpart: "paula", display_name: "Paula Poeder", profession: "pharmacist" },
    ],
  },
});
const { org, user, api, newRoom, membership, stateOf, expectRefused } = everyPathKit(net);
const enc = encodeURIComponent;
const LISTING = {
  listed: true,
  scope: "network",
  professions: ["pharmacist"],
  description: "Recalls, stock, shifts",
};

interface Entry {
  room_id: string;
  organisation: string;
  name?: string;
  professions: string[];
  may_knock: boolean;
  why_not?: string;
}
const contract = new OpenApiContract(join(REPO_ROOT, "policy-module", "openapi", "policy-module.yaml"));
/** The directory as a user sees it on their organisation's client URL, checked against the OpenAPI document. */
const directory = async (u: TestUser, search = "") => {
  const path = `/_medmesh/groups/v1/directory?search=${enc(search)}`;
  const res = await fetch(`${u.org.clientUrl}${path}`, {
    headers: { authorization: `Bearer ${u.accessToken}` },
  });
  await contract.check(contract.match("GET", path) ?? "", res.clone());
  const body = (await res.json()) as Record<string, unknown>;
  return { status: res.status, body, groups: (body.groups ?? []) as Entry[] };
};
/** A knock, naming A's server (as the directory entry's organisation) for users of other servers. */
const knock = (u: TestUser, roomId: string, via: "proxy" | "synapse" = "proxy") =>
  api(u, via, "POST", `/_matrix/client/v3/knock/${enc(roomId)}?via=${enc(org(0).serverName)}`, {
    reason: "I work in the region",
  });

/** A's own user knocks straight to Synapse: taken, then retracted by the room-admin bot with the reason. */
async function expectRetracted(u: TestUser, roomId: string, reason: RegExp): Promise<void> {
  const taken = await knock(u, roomId, "synapse");
  expect(taken.status, JSON.stringify(taken.body)).toBe(200);
  const left = await waitUntil(async () => {
    const e = (await stateOf(0, roomId, "m.room.member", u.userId)) ?? {};
    return e.membership === "leave" ? e : undefined;
  }, `the bot retracts ${u.userId}'s knock`);
  expect(left.reason).toMatch(reason);
}

describe("discoverable groups", () => {
  let groupId: string;
  let unlistedId: string;
  const name = `Pharmacists West ${randomBytes(3).toString("hex")}`;

  it("lists another organisation's room only as theirs, also when this organisation's bot is in it", async () => {
    const piet = await user(1, "piet");
    const roomId = await newRoom(piet, {
      name: `Pharmacists of B ${randomBytes(3).toString("hex")}`,
      initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }],
    });
    // A's room-admin bot joins any room it is invited to; the listing comes after (a limited
    // group refuses the bot's invite: it is not a verified pharmacist).
    const aBot = `@medmesh:${org(0).serverName}`;
    const invited = await api(piet, "proxy", "POST", `/_matrix/client/v3/rooms/${enc(roomId)}/invite`, {
      user_id: aBot,
    });
    expect(invited.status, JSON.stringify(invited.body)).toBe(200);
    await waitUntil(async () => (await membership(1, roomId, aBot)) === "join", "A's bot joins B's room");
    const listed = await api(
      piet,
      "proxy",
      "PUT",
      `/_matrix/client/v3/rooms/${enc(roomId)}/state/org.medmesh.group/`,
      LISTING,
    );
    expect(listed.status, JSON.stringify(listed.body)).toBe(200);
    const anna = await user(0, "anna");
    const entries = await waitUntil(async () => {
      const found = (await directory(anna, "pharmacists of b")).groups.filter((g) => g.room_id === roomId);
      return found.length > 0 ? found : undefined;
    }, "A's directory lists B's group (from B)");
    expect(entries.map((g) => g.organisation)).toEqual([org(1).serverName]);
    // For 10 s (A's appservice has the bot's join and the listing within a few seconds), A never
    // lists it as its own group.
    for (const until = Date.now() + 10_000; Date.now() < until;) {
      const now = (await directory(anna, "pharmacists of b")).groups.filter((g) => g.room_id === roomId);
      expect(now.map((g) => g.organisation)).toEqual([org(1).serverName]);
      await new Promise((r) => setTimeout(r, 500));
    }
  });

  it("refuses a malformed listing, and stores nothing", async () => {
    const anna = await user(0, "anna");
    const roomId = await newRoom(anna);
    for (const via of ["proxy", "synapse"] as const) {
      const bad = await api(
        anna,
        via,
        "PUT",
        `/_matrix/client/v3/rooms/${enc(roomId)}/state/org.medmesh.group/`,
        {
          listed: "yes",
        },
      );
      expectRefused(bad, /Invalid group listing.*listed/);
    }
    expect(await stateOf(0, roomId, "org.medmesh.group")).toBeUndefined();
    const created = await api(anna, "proxy", "POST", "/_matrix/client/v3/createRoom", {
      preset: "private_chat",
      initial_state: [
        { type: "org.medmesh.group", state_key: "", content: { listed: true, scope: "world" } },
      ],
    });
    expectRefused(created, /Invalid group listing.*scope/);
  });

  it("lists a knockable room for verified clinicians of every trusted organisation", async () => {
    const anna = await user(0, "anna");
    groupId = await newRoom(anna, {
      name,
      initial_state: [
        { type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } },
        { type: "org.medmesh.group", state_key: "", content: LISTING },
      ],
    });
    unlistedId = await newRoom(anna, {
      name: `${name} (unlisted)`,
      initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }],
    });
    const piet = await user(1, "piet");
    const found = await waitUntil(
      async () => (await directory(piet, "pharmacists west")).groups.find((g) => g.room_id === groupId),
      "B's directory lists A's group",
    );
    expect(found).toMatchObject({
      organisation: org(0).serverName,
      name,
      professions: ["pharmacist"],
      may_knock: true,
    });
    expect((await directory(piet)).groups.map((g) => g.room_id)).not.toContain(unlistedId);
    const gerda = await user(1, "gerda");
    expect(
      (await directory(gerda, "pharmacists west")).groups.find((g) => g.room_id === groupId),
    ).toMatchObject({
      may_knock: false,
      why_not: expect.stringMatching(
        /pharmacist only; you are registered as general practitioner/,
      ) as unknown,
    });
  });

  it("carries the listing over to the successor when the room is upgraded", async () => {
    const anna = await user(0, "anna");
    const upgradeName = `${name} (to upgrade)`;
    const before = await newRoom(anna, {
      name: upgradeName,
      initial_state: [
        { type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } },
        { type: "org.medmesh.group", state_key: "", content: LISTING },
      ],
    });
    const piet = await user(1, "piet");
    const listed = async (roomId: string) =>
      (await directory(piet, upgradeName)).groups.some((g) => g.room_id === roomId);
    await waitUntil(() => listed(before), "the room is listed before the upgrade");
    const created = (await stateOf(0, before, "m.room.create"))?.room_version;
    const version = typeof created === "string" ? created : "10";
    const upgraded = await api(anna, "proxy", "POST", `/_matrix/client/v3/rooms/${enc(before)}/upgrade`, {
      new_version: version,
    });
    expect(upgraded.status, JSON.stringify(upgraded.body)).toBe(200);
    const after = String(upgraded.body.replacement_room);
    const carried = await waitUntil(
      () => stateOf(0, after, "org.medmesh.group"),
      "the successor holds the group listing",
    );
    expect(carried).toEqual(LISTING);
    await waitUntil(() => listed(after), "the directory lists the successor");
    expect(await listed(before)).toBe(false);
  });

  it("shows the directory to no unverified user, and takes no knock from one", async () => {
    const uma = await user(1, "uma");
    const seen = await directory(uma);
    expectRefused(
      { status: seen.status, body: seen.body },
      /Only verified clinicians see the group directory/,
    );
    expectRefused(await knock(uma, groupId), /Only verified clinicians can ask to join/);
    expect(await membership(0, groupId, uma.userId)).toBeUndefined();
    // A's own unverified user: the proxy refuses; straight to Synapse (which has no decision point
    // for its own user's knock) the knock is taken and the room-admin bot retracts it with the reason.
    const otto = await user(0, "otto");
    expectRefused(await knock(otto, groupId), /Only verified clinicians can ask to join/);
    expect(await membership(0, groupId, otto.userId)).toBeUndefined();
    await expectRetracted(otto, groupId, /Only verified clinicians can ask to join/);
  });

  it("a pharmacist of B knocks, a moderator approves, the pharmacist joins", async () => {
    const [anna, piet] = await Promise.all([user(0, "anna"), user(1, "piet")]);
    const asked = await knock(piet, groupId);
    expect(asked.status, JSON.stringify(asked.body)).toBe(200);
    await waitUntil(
      async () => (await membership(0, groupId, piet.userId)) === "knock" || undefined,
      "Piet's knock in A's room",
    );
    // Approving a knock is inviting the knocker.
    const approved = await api(anna, "proxy", "POST", `/_matrix/client/v3/rooms/${enc(groupId)}/invite`, {
      user_id: piet.userId,
    });
    expect(approved.status, JSON.stringify(approved.body)).toBe(200);
    await waitUntil(async () => {
      const r = await api(
        piet,
        "proxy",
        "POST",
        `/_matrix/client/v3/join/${enc(groupId)}?via=${enc(org(0).serverName)}`,
        {},
      );
      return r.status === 200 || undefined;
    }, "Piet joins once invited");
    await waitUntil(
      async () => (await membership(0, groupId, piet.userId)) === "join" || undefined,
      "Piet's join in A's room",
    );
  });

  it("refuses a GP: the knock (B's and A's), an invite, and a knock on an unlisted room", async () => {
    const [anna, gerda, gijs, piet] = await Promise.all([
      user(0, "anna"),
      user(1, "gerda"),
      user(0, "gijs"),
      user(1, "piet"),
    ]);
    // B takes part in the room now (Piet): B's proxy decides with B's copy of the room's state.
    expectRefused(
      await knock(gerda, groupId),
      /is for pharmacist only; .* is registered as general practitioner/,
    );
    expectRefused(await knock(gijs, groupId), /is for pharmacist only/);
    // Straight to B's Synapse: B takes it, A's Synapse refuses the PDU (soft-failed, never in A's state).
    expect((await knock(gerda, groupId, "synapse")).status).toBe(200);
    const invited = await api(anna, "synapse", "POST", `/_matrix/client/v3/rooms/${enc(groupId)}/invite`, {
      user_id: gerda.userId,
    });
    expectRefused(invited, /is for pharmacist only/);
    expectRefused(await knock(piet, unlistedId), /not listed in the group directory/);
    expect(await membership(0, unlistedId, piet.userId)).toBeUndefined();
    await new Promise((r) => setTimeout(r, 1000));
    expect(await membership(0, groupId, gerda.userId), "Gerda in A's copy of the room").toBeUndefined();
    await expectRetracted(gijs, groupId, /is for pharmacist only/);
  });

  it("refuses a GP's knock that B's server sends without asking first (Synapse's module, soft-failed)", async () => {
    // What a server that skipped make_knock could send: a signed knock PDU, straight to send_knock.
    const anna = await user(0, "anna");
    const b = federationClientOf(org(1));
    const sendKnock = async (u: TestUser) => {
      const state = (await api(anna, "synapse", "GET", `/_matrix/client/v3/rooms/${enc(groupId)}/state`))
        .body as unknown as { type: string; state_key: string; event_id: string }[];
      const id = (type: string) => state.find((e) => e.type === type && e.state_key === "")?.event_id;
      const latest = await api(
        anna,
        "synapse",
        "GET",
        `/_matrix/client/v3/rooms/${enc(groupId)}/messages?dir=b&limit=1`,
      );
      const { event, eventId } = b.event({
        type: "m.room.member",
        state_key: u.userId,
        sender: u.userId,
        room_id: groupId,
        content: { membership: "knock" },
        depth: 100,
        prev_events: [(latest.body.chunk as { event_id: string }[])[0]!.event_id],
        // Room version 12: the create event is implied by the room ID.
        auth_events: [id("m.room.power_levels"), id("m.room.join_rules")],
      });
      return b.send(
        org(0),
        "PUT",
        `/_matrix/federation/v1/send_knock/${enc(groupId)}/${enc(eventId)}`,
        event,
      );
    };
    // The control: a pharmacist's knock sent the same way is taken into A's room.
    const paula = await user(1, "paula");
    const control = await sendKnock(paula);
    expect(control.status, JSON.stringify(control.body)).toBe(200);
    await waitUntil(
      async () => (await membership(0, groupId, paula.userId)) === "knock" || undefined,
      "Paula's hand-sent knock in A's room",
    );
    const gerda = await user(1, "gerda");
    const refused = await sendKnock(gerda);
    process.stdout.write(
      `send_knock of a refused knock: ${String(refused.status)} ${JSON.stringify(refused.body).slice(0, 200)}\n`,
    );
    await new Promise((r) => setTimeout(r, 1000));
    expect(await membership(0, groupId, gerda.userId), "Gerda's knock in A's room state").toBeUndefined();
  });
});
