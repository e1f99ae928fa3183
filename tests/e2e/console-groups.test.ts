import { randomBytes } from "node:crypto";
import { createAuditLog } from "@medmesh/common";
import type { RunningOrganisation } from "@medmesh/deploy";
import type { MatrixClient } from "matrix-js-sdk";
import type { Page } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { everyPathKit } from "../harness/every-path.ts";
import {
  startChromium,
  useTestNetwork,
  waitForMembership,
  waitUntil,
  type HeadlessChromium,
} from "../harness/index.ts";
import {
  apiSignIn,
  capture,
  checkPageCalls,
  consoleApi,
  openSection,
  pageSignIn,
  registerWithPassword,
  text,
} from "./console-helpers.ts";

// The console's groups page (docs/groups.md, docs/console.md) in real Chromium: A's listed group,
// knocks from B's pharmacist and B's GP, approved and refused by A's org admin through the
// room-admin bot, the invite decision still deciding; read-only for auditors; unlisting.
const net = useTestNetwork({
  name: "console-groups",
  organisations: 2,
  verifiedClinicians: {
    0: [{ localpart: "anna", display_name: "Anna Apotheker", profession: "pharmacist" }],
    1: [
      { localpart: "piet", display_name: "Piet Pillen", profession: "pharmacist" },
      { localpart: "gerda", display_name: "Gerda Dokter", profession: "general practitioner" },
    ],
  },
});
const { org, user, api, newRoom, membership, stateOf } = everyPathKit(net);
const A = (): RunningOrganisation => org(0);
const enc = encodeURIComponent;
const auditA = () => createAuditLog(A().services.find((s) => s.name === "policy-module")!.store.knex);
const LISTING = { listed: true, scope: "network", professions: [], description: "Recalls, stock, shifts" };

let chromium: HeadlessChromium;
beforeAll(async () => {
  chromium = await startChromium("console-groups");
});
afterAll(() => chromium.close());

const knock = async (localpart: string, roomId: string) => {
  const u = await user(1, localpart);
  const r = await api(
    u,
    "proxy",
    "POST",
    `/_matrix/client/v3/knock/${enc(roomId)}?via=${enc(A().serverName)}`,
    {
      reason: `${localpart} works in the region`,
    },
  );
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  await waitUntil(
    async () => (await membership(0, roomId, u.userId)) === "knock" || undefined,
    `${localpart}'s knock in A's room`,
  );
  return u;
};
const row = (roomId: string, userId: string) => `section[data-room="${roomId}"] tr[data-user="${userId}"]`;

describe("the console's groups page", () => {
  const name = `Apothekers West ${randomBytes(3).toString("hex")}`;
  let groupId: string;
  let admin: Awaited<ReturnType<typeof registerWithPassword>>;
  let pietId: string;
  let gerdaId: string;

  it("lists the group with both knocks; an auditor (Dutch page) and a reviewer see them read-only (no buttons, API 403)", async () => {
    const anna = await user(0, "anna");
    // Open to every verified clinician when both knock; limited to pharmacists afterwards: the
    // GP's knock is still pending, and an approve must meet the group's rule as it is now.
    groupId = await newRoom(anna, {
      name,
      initial_state: [
        { type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } },
        { type: "org.medmesh.group", state_key: "", content: LISTING },
      ],
    });
    admin = await registerWithPassword(A(), `groups-admin-${randomBytes(2).toString("hex")}`, true);
    const s = await apiSignIn(A(), admin.localpart, admin.password);
    const listedWith = (professions: string[]) =>
      waitUntil(
        async () => {
          const groups = (await consoleApi(A(), "GET", "/groups", { cookie: s.cookie })).body.groups as {
            room_id: string;
            professions: string[];
          }[];
          const g = groups.find((x) => x.room_id === groupId);
          return g && g.professions.join() === professions.join() ? g : undefined;
        },
        `the console lists the group for ${professions.join() || "every profession"}`,
      );
    await listedWith([]);
    pietId = (await knock("piet", groupId)).userId;
    gerdaId = (await knock("gerda", groupId)).userId;
    const limited = await api(
      anna,
      "proxy",
      "PUT",
      `/_matrix/client/v3/rooms/${enc(groupId)}/state/org.medmesh.group/`,
      { ...LISTING, professions: ["pharmacist"] },
    );
    expect(limited.status, JSON.stringify(limited.body)).toBe(200);
    const listed = await listedWith(["pharmacist"]);
    expect(listed).toMatchObject({ name, scope: "network", members: 2, in_directory: true });

    const auditor = await registerWithPassword(A(), `groups-auditor-${randomBytes(2).toString("hex")}`);
    const granted = await consoleApi(A(), "PUT", `/roles/${enc(auditor.userId)}`, {
      cookie: s.cookie,
      csrf: s.csrf,
      body: { role: "auditor" },
    });
    expect(granted.status, JSON.stringify(granted.body)).toBe(200);
    const page = await chromium.page("nl-NL");
    const calls = checkPageCalls(page);
    await pageSignIn(page, A(), auditor.localpart, auditor.password);
    await openSection(page, "groups");
    await page.waitForSelector(row(groupId, pietId));
    await page.waitForSelector(row(groupId, gerdaId));
    expect(await text(page, "main h1")).toBe("Vindbare groepen");
    expect(await text(page, `section[data-room="${groupId}"] h3`)).toBe("Toegangsverzoeken");
    expect(await text(page, `${row(groupId, pietId)} .profession`)).toBe("pharmacist");
    expect(await text(page, `${row(groupId, gerdaId)} .profession`)).toBe("general practitioner");
    expect(await text(page, `${row(groupId, gerdaId)} .rule`)).toMatch(/is for pharmacist only/);
    expect(await text(page, `${row(groupId, pietId)} .rule`)).toBe("toegelaten");
    expect(await text(page, "#groups-read-only")).toContain("alleen organisatiebeheerders");
    expect(await page.$(`section[data-room="${groupId}"] button.approve`)).toBeNull();
    expect(await page.$(`section[data-room="${groupId}"] button.unlist`)).toBeNull();
    expect(await capture(chromium, page, "01-groups-auditor-nl")).toEqual([]);
    expect(await calls.checked()).toEqual(
      expect.arrayContaining([
        "GET /_medmesh/console/api/v1/groups",
        "GET /_medmesh/console/api/v1/groups/{roomId}/knocks",
      ]) as unknown,
    );
    await page.close();
    const as = await apiSignIn(A(), auditor.localpart, auditor.password);
    const refused = await consoleApi(A(), "POST", `/groups/${enc(groupId)}/knocks/${enc(pietId)}/approve`, {
      cookie: as.cookie,
      csrf: as.csrf,
      body: {},
    });
    expect(refused).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
    expect(String(refused.body.error)).toContain("auditor");
    // A reviewer reads the knocks too, and may neither refuse one nor unlist the group.
    const reviewer = await registerWithPassword(A(), `groups-reviewer-${randomBytes(2).toString("hex")}`);
    await consoleApi(A(), "PUT", `/roles/${enc(reviewer.userId)}`, {
      cookie: s.cookie,
      csrf: s.csrf,
      body: { role: "reviewer" },
    });
    const rs = await apiSignIn(A(), reviewer.localpart, reviewer.password);
    const seen = await consoleApi(A(), "GET", `/groups/${enc(groupId)}/knocks`, { cookie: rs.cookie });
    expect((seen.body.knocks as { user_id: string }[]).map((k) => k.user_id).sort()).toEqual(
      [gerdaId, pietId].sort(),
    );
    for (const [path, body] of [
      [`/groups/${enc(groupId)}/knocks/${enc(gerdaId)}/refuse`, { reason: "no" }],
      [`/groups/${enc(groupId)}/unlist`, { confirm: groupId }],
    ] as const) {
      const r = await consoleApi(A(), "POST", path, { cookie: rs.cookie, csrf: rs.csrf, body });
      expect(r).toMatchObject({ status: 403, body: { errcode: "M_FORBIDDEN" } });
      expect(String(r.body.error)).toContain("reviewer");
    }
    expect(await membership(0, groupId, pietId)).toBe("knock");
    expect(await membership(0, groupId, gerdaId)).toBe("knock");
    expect(await stateOf(0, groupId, "org.medmesh.group")).toMatchObject({ listed: true });
  });

  it("the org admin approves the pharmacist (who joins), is refused for the GP, and refuses the GP with a reason (French)", async () => {
    const page = await chromium.page("fr-BE");
    const calls = checkPageCalls(page);
    await pageSignIn(page, A(), admin.localpart, admin.password);
    await openSection(page, "groups");
    await page.waitForSelector(`${row(groupId, gerdaId)} button.approve`);
    expect(await text(page, "main h1")).toBe("Groupes de l'annuaire");
    expect(await text(page, `${row(groupId, gerdaId)} button.approve`)).toContain("Approuver");
    expect(await capture(chromium, page, "02-groups-fr")).toEqual([]);

    // The GP: the invite decision refuses, its reason is shown, and she is still only knocking.
    await page.click(`${row(groupId, gerdaId)} button.approve`);
    await page.waitForSelector(`section[data-room="${groupId}"] .group-error`);
    expect(await text(page, `section[data-room="${groupId}"] .group-error`)).toMatch(
      /is for pharmacist only; .* is registered as general practitioner/,
    );
    expect(await capture(chromium, page, "03-approve-refused-fr")).toEqual([]);
    expect(await membership(0, groupId, gerdaId)).toBe("knock");

    // The pharmacist: invited by the room-admin bot; his own client sees it and joins.
    const piet = await user(1, "piet");
    const pietClient: MatrixClient = await net().client(piet);
    await page.click(`${row(groupId, pietId)} button.approve`);
    await page.waitForSelector(`section[data-room="${groupId}"] .group-message`);
    expect(await text(page, `section[data-room="${groupId}"] .group-message`)).toContain(pietId);
    const invited = await waitForMembership(pietClient, groupId, "invite", { description: "Piet's invite" });
    expect(invited.getMember(pietId)?.events.member?.getSender()).toBe(`@medmesh:${A().serverName}`);
    await pietClient.joinRoom(groupId, { viaServers: [A().serverName] });
    await waitUntil(
      async () => (await membership(0, groupId, pietId)) === "join" || undefined,
      "Piet's join in A's room",
    );

    // The GP, refused with a reason: her knock is kicked, the reason on her membership.
    const reason = `Deze groep is alleen voor apothekers ${randomBytes(2).toString("hex")}`;
    await page.waitForFunction(`!document.querySelector(${JSON.stringify(row(groupId, pietId))})`);
    await page.type(`${row(groupId, gerdaId)} .refuse-reason`, reason);
    await page.click(`${row(groupId, gerdaId)} button.refuse`);
    await page.waitForSelector(`section[data-room="${groupId}"] .no-knocks`);
    expect(await text(page, `section[data-room="${groupId}"] .group-message`)).toContain(gerdaId);
    const gerdaMember = await stateOf(0, groupId, "m.room.member", gerdaId);
    expect(gerdaMember).toMatchObject({ membership: "leave", reason });
    expect(await capture(chromium, page, "04-decided-fr")).toEqual([]);
    await calls.checked();
    await page.close();

    // Audited with the console user as actor.
    const audit = auditA();
    const find = async (action: string, object: string) =>
      (await audit.find({ action: `console.${action}`, object })).map((r) => [r.actor, r.outcome, r.details]);
    expect(await find("group_knock_approved", pietId)).toEqual([
      [admin.userId, "invited", expect.objectContaining({ room_id: groupId, group: name }) as unknown],
    ]);
    expect(await find("group_knock_approve_refused", gerdaId)).toEqual([
      [
        admin.userId,
        "refused",
        expect.objectContaining({
          reason: expect.stringMatching(/is for pharmacist only/) as unknown,
        }) as unknown,
      ],
    ]);
    expect(await find("group_knock_refused", gerdaId)).toEqual([
      [admin.userId, "ok", expect.objectContaining({ room_id: groupId, reason }) as unknown],
    ]);
  });

  it("refuses bad input with clear 4xx messages, and does nothing", async () => {
    const s = await apiSignIn(A(), admin.localpart, admin.password);
    const call = (method: string, path: string, body?: unknown) =>
      consoleApi(A(), method, path, {
        cookie: s.cookie,
        csrf: s.csrf,
        ...(body === undefined ? {} : { body }),
      });
    const expectError = (
      r: { status: number; body: Record<string, unknown> },
      status: number,
      message: RegExp,
    ): void => {
      expect(r.status, JSON.stringify(r.body)).toBe(status);
      expect(String(r.body.error)).toMatch(message);
    };
    expectError(await call("GET", `/groups/${enc("not-a-room")}/knocks`), 400, /is not a Matrix room ID/);
    expectError(
      await call("GET", `/groups/${enc("!nothing-here")}/knocks`),
      404,
      /is not a room of .* group directory/,
    );
    // A knockable room of A that is not listed.
    const anna = await user(0, "anna");
    const unlisted = await newRoom(anna, {
      name: `${name} (unlisted)`,
      initial_state: [{ type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } }],
    });
    const notListed = await waitUntil(async () => {
      const r = await call("GET", `/groups/${enc(unlisted)}/knocks`);
      return r.status === 404 && String(r.body.error).includes("is not listed") ? r : undefined;
    }, "the unlisted room is known and refused as not listed");
    expect(notListed.body.errcode).toBe("M_NOT_FOUND");
    // The knock is no longer pending (Piet joined, Gerda was refused).
    const pietAgain = await call("POST", `/groups/${enc(groupId)}/knocks/${enc(pietId)}/approve`, {});
    expectError(pietAgain, 409, /has no pending request to join .* \(membership: join\)/);
    const gerdaAgain = await call("POST", `/groups/${enc(groupId)}/knocks/${enc(gerdaId)}/refuse`, {
      reason: "again",
    });
    expectError(gerdaAgain, 409, /\(membership: leave\)/);
    expectError(
      await call("POST", `/groups/${enc(groupId)}/knocks/${enc(gerdaId)}/refuse`, { reason: "  " }),
      400,
      /reason: say why/,
    );
    expectError(await call("POST", `/groups/${enc(groupId)}/unlist`, {}), 400, /Confirm by sending confirm/);
    expect(await stateOf(0, groupId, "org.medmesh.group")).toMatchObject({ listed: true });

    // A room B's clinician made and invited A's room-admin bot to: never in A's index, never A's
    // to manage (docs/groups.md: only rooms created on this server are its groups).
    const gerda = await user(1, "gerda");
    const aBot = `@medmesh:${A().serverName}`;
    const bRoom = await api(gerda, "synapse", "POST", "/_matrix/client/v3/createRoom", {
      preset: "private_chat",
      name: "B's own group",
      invite: [aBot],
      initial_state: [
        { type: "m.room.join_rules", state_key: "", content: { join_rule: "knock" } },
        { type: "org.medmesh.group", state_key: "", content: LISTING },
      ],
    });
    expect(bRoom.status, JSON.stringify(bRoom.body)).toBe(200);
    const bRoomId = String(bRoom.body.room_id);
    await waitUntil(
      async () => (await stateOf(1, bRoomId, "m.room.member", aBot))?.membership === "join" || undefined,
      "A's bot joins B's room",
    );
    await new Promise((r) => setTimeout(r, 3000)); // A's appservice has the bot's join by now
    expectError(
      await call("POST", `/groups/${enc(bRoomId)}/unlist`, { confirm: bRoomId }),
      404,
      /is not a room of .*'s group directory/,
    );
    const groups = (await call("GET", "/groups")).body.groups as { room_id: string }[];
    expect(groups.map((g) => g.room_id)).not.toContain(bRoomId);
    expect(await stateOf(1, bRoomId, "org.medmesh.group")).toMatchObject({ listed: true });
  });

  it("unlists the group after the confirmation dialog (dismissed first: nothing happens)", async () => {
    const page: Page = await chromium.page("en-GB");
    let answer = false;
    page.on("dialog", (d) => void (answer ? d.accept() : d.dismiss()));
    await pageSignIn(page, A(), admin.localpart, admin.password);
    await openSection(page, "groups");
    const unlist = `section[data-room="${groupId}"] button.unlist`;
    await page.waitForSelector(unlist);
    await page.click(unlist);
    await new Promise((r) => setTimeout(r, 500));
    expect(await stateOf(0, groupId, "org.medmesh.group")).toMatchObject({ listed: true });
    answer = true;
    await page.click(unlist);
    await page.waitForSelector("#groups-message");
    expect(await text(page, "#groups-message")).toBe(`${name} is no longer listed.`);
    await page.waitForFunction(
      `!document.querySelector(${JSON.stringify(`section[data-room="${groupId}"]`)})`,
    );
    expect(await stateOf(0, groupId, "org.medmesh.group")).toEqual({
      ...LISTING,
      professions: ["pharmacist"],
      listed: false,
    });
    expect(await capture(chromium, page, "05-unlisted")).toEqual([]);
    await page.close();
    const record = (await auditA().find({ action: "console.group_unlisted", object: groupId }))[0];
    expect(record).toMatchObject({ actor: admin.userId, outcome: "ok", details: { group: name } });
    // Gone from the directory B's clinicians see.
    const piet = await user(1, "piet");
    const dir = await api(piet, "proxy", "GET", `/_medmesh/groups/v1/directory?search=${enc(name)}`);
    expect((dir.body.groups as { room_id: string }[]).map((g) => g.room_id)).not.toContain(groupId);
  });
});
