import { randomBytes } from "node:crypto";
import type { MatrixClient } from "matrix-js-sdk";
import { departmentsKit, DEPARTMENTS_PATH, hour } from "./departments-kit.ts";
import { describe, expect, it } from "vitest";
import { capture, openSection, pageSignIn, registerWithPassword, text } from "./console-helpers.ts";
import {
  waitForMembership,
  waitForRoomEvent,
  startChromium,
  waitUntil,
  withSynapseDb,
} from "../harness/index.ts";

// Department accounts over time (docs/departments.md): the desk is re-staffed at the shift change
// itself, without a message; a department ended (DELETE) closes its conversations and account.
const { net, user, A, call, auditA } = departmentsKit("departments-lifecycle");
const PATH = DEPARTMENTS_PATH;
const iso = (ms: number) => new Date(ms).toISOString();
const bodyOf = (e: { getContent(): Record<string, unknown> }) => e.getContent().body;
const sees = (c: MatrixClient, room: string, text: string, who: string) =>
  waitForRoomEvent(c, room, (e) => e.getType() === "m.room.message" && bodyOf(e) === text, {
    description: who,
    timeoutMs: 60_000,
  });
/** The members of a room as Synapse holds them now (its current state), user → membership. */
const membershipsInSynapse = (roomId: string) =>
  withSynapseDb(A(), async (db) =>
    Object.fromEntries(
      (
        await db.all<{ state_key: string; membership: string }>(
          "SELECT state_key, membership FROM current_state_events WHERE room_id = ? AND type = 'm.room.member'",
          [roomId],
        )
      ).map((r) => [r.state_key, r.membership]),
    ),
  );

describe("department accounts over time", () => {
  const id = `cardio-${randomBytes(3).toString("hex")}`;
  const deptUserId = () => `@medmesh-dept-${id}:${A().serverName}`;
  // The second test goes on with the first's conversation and clients (their devices have the keys).
  const state: { roomId?: string; deskId?: string; bc?: MatrixClient; gc?: MatrixClient } = {};

  /** Gerda of B writes to the department; the desk it makes for her conversation. */
  const conversation = async (gc: MatrixClient, text: string) => {
    const { room_id: roomId } = await gc.createRoom({ invite: [deptUserId()] });
    await waitForRoomEvent(
      gc,
      roomId,
      (e) =>
        e.getType() === "m.room.member" &&
        e.getStateKey() === deptUserId() &&
        e.getContent().membership === "join",
      { description: "the department account joins Gerda's room", timeoutMs: 60_000 },
    );
    const sent = await gc.sendTextMessage(roomId, text);
    const record = await waitUntil(
      async () =>
        (await auditA().find({ action: "department.message", object: roomId })).find(
          (r) => r.details.event_id === sent.event_id,
        ),
      "the relay is audited",
      60_000,
    );
    expect(record.outcome).toBe("relayed");
    return { roomId, deskId: String(record.details.desk_room_id) };
  };

  it("re-staffs the desk at the shift change itself, without a new message", async () => {
    const [anna, bert, gerda] = await Promise.all([user(0, "anna"), user(0, "bert"), user(1, "gerda")]);
    const [ac, bc, gc] = await Promise.all([net().client(anna), net().client(bert), net().client(gerda)]);
    const members = [anna.userId, bert.userId];
    const created = await call("PUT", `${PATH}/${id}`, {
      name: "Cardiology on duty",
      members,
      rota: [{ from: iso(Date.now() - hour), until: iso(Date.now() + 8 * hour), on_duty: [anna.userId] }],
    });
    expect(created.status).toBe(201);
    const first = `Chest pain, 54 y ${randomBytes(3).toString("hex")}`;
    const { roomId, deskId } = await conversation(gc, first);
    Object.assign(state, { roomId, deskId, bc, gc });
    await waitForMembership(ac, deskId, "invite", { description: "Anna is invited to the desk" });
    await ac.joinRoom(deskId);
    await sees(ac, deskId, `${gerda.userId}: ${first}`, "Anna reads Gerda's message");

    // Anna's shift now ends a few seconds ahead; Bert's begins there.
    const boundary = Date.now() + 8_000;
    const switched = await call("PUT", `${PATH}/${id}`, {
      name: "Cardiology on duty",
      members,
      rota: [
        { from: iso(Date.now() - hour), until: iso(boundary), on_duty: [anna.userId] },
        { from: iso(boundary), until: iso(boundary + 8 * hour), on_duty: [bert.userId] },
      ],
    });
    expect(switched.body).toMatchObject({ on_duty_now: [anna.userId] });
    // Before the boundary nothing changes: Anna is in the desk, Bert is not.
    await new Promise((r) => setTimeout(r, Math.max(0, boundary - Date.now() - 2_000)));
    expect(await membershipsInSynapse(deskId)).toMatchObject({ [anna.userId]: "join" });
    expect((await membershipsInSynapse(deskId))[bert.userId]).toBeUndefined();

    // At the boundary, with no message sent: Bert is invited, Anna removed (Synapse's membership).
    await waitUntil(
      () => bc.getRoom(deskId)?.getMyMembership() === "invite",
      "Bert is invited at the shift change",
    );
    await waitUntil(() => ac.getRoom(deskId)?.getMyMembership() === "leave", "Anna is removed from the desk");
    expect(await membershipsInSynapse(deskId)).toMatchObject({
      [anna.userId]: "leave",
      [bert.userId]: "invite",
      [deptUserId()]: "join",
    });
    // Audited once the account's own client shows the change.
    const atChange = await waitUntil(async () => {
      const found = await auditA().find({ action: "department.restaffed", object: deskId });
      const records = found.filter((r) => r.details.trigger === "shift_change");
      return records.length > 0 ? records : undefined;
    }, "the shift change is audited");
    expect(atChange.map((r) => [r.actor, r.outcome, r.details.added, r.details.removed])).toEqual([
      [deptUserId(), "ok", [bert.userId], [anna.userId]],
    ]);
    expect(new Date(atChange[0]!.at).getTime()).toBeGreaterThanOrEqual(boundary);
    // It was the shift change, not a message: only Gerda's first message was relayed.
    expect(await auditA().find({ action: "department.message", object: roomId })).toHaveLength(1);

    // Bert answers from the desk; Gerda gets it from the department account.
    await bc.joinRoom(deskId);
    await waitUntil(
      async () => (await bc.getCrypto()?.isEncryptionEnabledInRoom(deskId)) === true,
      "Bert's client knows the desk is encrypted",
    );
    const answer = `Bert here ${randomBytes(3).toString("hex")}`;
    await bc.sendTextMessage(deskId, answer);
    expect((await sees(gc, roomId, answer, "Gerda gets Bert's answer")).getSender()).toBe(deptUserId());
  });

  it("ends a department (DELETE): the conversation is told and left, the desk emptied, the account deactivated", async () => {
    const { roomId, deskId, bc, gc } = state;
    if (!roomId || !deskId || !bc || !gc) throw new Error("needs the conversation of the test before");
    const bert = await user(0, "bert");
    expect((await membershipsInSynapse(deskId))[bert.userId]).toBe("join");

    const ended = await call("DELETE", `${PATH}/${id}`);
    expect(ended).toEqual({
      status: 200,
      body: {
        id,
        user_id: deptUserId(),
        retired: true,
        conversations_left: 1,
        desks_left: 1,
        deactivated: true,
      },
    });
    // Gerda reads the notice, from the department account, and the account has left her room.
    const notice = await waitForRoomEvent(
      gc,
      roomId,
      (e) =>
        e.getType() === "m.room.message" &&
        e.getSender() === deptUserId() &&
        e.getContent().msgtype === "m.notice",
      { description: "the closing notice reaches Gerda", timeoutMs: 60_000 },
    );
    expect(bodyOf(notice)).toBe(
      `Cardiology on duty (${A().serverName}) is closed: this account no longer reads or answers messages. Please contact the organisation another way.`,
    );
    await waitUntil(
      () => gc.getRoom(roomId)?.getMember(deptUserId())?.membership === "leave",
      "Gerda's client shows the account left",
    );
    // The desk emptied and left; Synapse's account deactivated, not erased.
    expect(await membershipsInSynapse(deskId)).toMatchObject({
      [bert.userId]: "leave",
      [deptUserId()]: "leave",
    });
    await waitUntil(() => bc.getRoom(deskId)?.getMyMembership() === "leave", "Bert is out of the desk");
    const account = await withSynapseDb(A(), async (db) => ({
      deactivated: (
        await db.all<{ deactivated: number }>("SELECT deactivated FROM users WHERE name = ?", [deptUserId()])
      )[0]?.deactivated,
      erased: (await db.all("SELECT 1 FROM erased_users WHERE user_id = ?", [deptUserId()])).length,
    }));
    expect(account).toEqual({ deactivated: 1, erased: 0 });
    const retired = await auditA().find({ action: "department.retired", object: deptUserId() });
    expect(retired.map((r) => [r.actor, r.outcome, r.details])).toEqual([
      [
        "admin-token",
        "ok",
        {
          department: id,
          conversations: [roomId],
          desks: [deskId],
          removed: [bert.userId],
          deactivated: true,
        },
      ],
    ]);

    // A message afterwards reaches no desk: nothing relayed, nothing new in the desk.
    const deskEvents = () =>
      withSynapseDb(
        A(),
        async (db) => (await db.all("SELECT 1 FROM events WHERE room_id = ?", [deskId])).length,
      );
    const before = await deskEvents();
    const late = await gc.sendTextMessage(roomId, `Anyone there? ${randomBytes(3).toString("hex")}`);
    await new Promise((r) => setTimeout(r, 5_000));
    const relayed = await auditA().find({ action: "department.message", object: roomId });
    expect(relayed.map((r) => r.details.event_id)).not.toContain(late.event_id);
    expect(await deskEvents()).toBe(before);
    // Gone from the directory, the ID is not taken again, and a second DELETE does nothing.
    const found = await gc.searchUserDirectory({ term: "cardiology" });
    expect(found.results.map((r) => r.user_id)).not.toContain(deptUserId());
    expect((await call("GET", `${PATH}/${id}`)).status).toBe(404);
    const again = await call("PUT", `${PATH}/${id}`, {
      name: "Cardiology on duty",
      members: [bert.userId],
      rota: [{ from: iso(Date.now() - hour), until: iso(Date.now() + hour), on_duty: [bert.userId] }],
    });
    expect(again.status).toBe(400);
    expect(again.body.error).toMatch(/^departmentId: was ended on /);
    expect((await call("DELETE", `${PATH}/${id}`)).body.errcode).toBe("M_NOT_FOUND");
    expect((await call("DELETE", `${PATH}/unknown-${id}`)).status).toBe(404);
    expect(await auditA().find({ action: "department.retired", object: deptUserId() })).toHaveLength(1);
  });

  it("ends a department from the console (nl), after a confirmation that says what it does", async () => {
    const ward = `ward-${randomBytes(3).toString("hex")}`;
    const wardUserId = `@medmesh-dept-${ward}:${A().serverName}`;
    const anna = await user(0, "anna");
    const rota = [{ from: iso(Date.now() - hour), until: iso(Date.now() + hour), on_duty: [anna.userId] }];
    expect(
      (await call("PUT", `${PATH}/${ward}`, { name: "Spoedeisende hulp", members: [anna.userId], rota }))
        .status,
    ).toBe(201);
    const chromium = await startChromium("departments-lifecycle");
    try {
      const admin = await registerWithPassword(A(), `end-admin-${randomBytes(2).toString("hex")}`, true);
      const page = await chromium.page("nl-NL");
      const asked: string[] = [];
      page.on("dialog", (dialog) => {
        asked.push(dialog.message());
        void dialog.accept();
      });
      await pageSignIn(page, A(), admin.localpart, admin.password);
      await openSection(page, "departments");
      const button = `.end-department[data-department="${ward}"]`;
      await page.waitForSelector(button);
      expect(await capture(chromium, page, "01-departments-end-nl")).toEqual([]);
      await page.click(button);
      await page.waitForSelector("#departments-message");
      expect(asked).toEqual([
        `Spoedeisende hulp beëindigen? De gesprekken krijgen bericht dat het account gesloten is, de balies worden leeggemaakt en het account ${wardUserId} wordt gedeactiveerd. Dit kan niet ongedaan worden gemaakt.`,
      ]);
      expect(await text(page, "#departments-message")).toBe(
        "Spoedeisende hulp is beëindigd: 0 gesprekken op de hoogte gebracht en verlaten, het account gedeactiveerd.",
      );
      await page.waitForFunction(`!document.querySelector(${JSON.stringify(button)})`);
      expect(await capture(chromium, page, "02-department-ended-nl")).toEqual([]);
      const audited = await auditA().find({ action: "console.department_retired", object: wardUserId });
      expect(audited.map((r) => [r.actor, r.outcome])).toEqual([[admin.userId, "ok"]]);
      expect((await call("GET", `${PATH}/${ward}`)).status).toBe(404);
    } finally {
      await chromium.close();
    }
  });
});
