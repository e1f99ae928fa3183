import { randomBytes } from "node:crypto";
import type { AuditRecord } from "@medmesh/common";
import type { MatrixClient } from "matrix-js-sdk";
import { departmentsKit, DEPARTMENTS_PATH, hour } from "./departments-kit.ts";
import { describe, expect, it } from "vitest";
import { capture, openSection, pageSignIn, registerWithPassword, text } from "./console-helpers.ts";
import { waitForMembership, waitForRoomEvent, waitUntil, startChromium } from "../harness/index.ts";

// Department (functional) accounts (docs/departments.md): "Cardiology on duty" of A, written to by
// a GP of B. Messages reach only the member on duty (the test switches the rota), the answer
// comes from the department account, and the audit log names who answered.
const { net, user, A, call, auditA } = departmentsKit("departments");
const PATH = DEPARTMENTS_PATH;
const iso = (offsetMs: number) => new Date(Date.now() + offsetMs).toISOString();
const bodyOf = (e: { getContent(): Record<string, unknown> }) => e.getContent().body;

describe("department accounts", () => {
  const id = `cardio-${randomBytes(3).toString("hex")}`;
  const deptUserId = () => `@medmesh-dept-${id}:${A().serverName}`;

  it("refuses a rota with a gap or an overlap, naming the field, and stores nothing", async () => {
    const [anna, bert] = await Promise.all([user(0, "anna"), user(0, "bert")]);
    const members = [anna.userId, bert.userId];
    const gap = await call("PUT", `${PATH}/bad-${id}`, {
      name: "Cardiology on duty",
      members,
      rota: [
        { from: iso(-hour), until: iso(hour), on_duty: [anna.userId] },
        { from: iso(2 * hour), until: iso(3 * hour), on_duty: [bert.userId] },
      ],
    });
    expect(gap.status).toBe(400);
    expect(gap.body.errcode).toBe("M_INVALID_PARAM");
    expect(gap.body.error).toMatch(/^rota\[1\]\.from: leaves a gap of 60 min after rota\[0\]/);
    const start = new Date(Date.now() - hour);
    const overlap = await call("PUT", `${PATH}/bad-${id}`, {
      name: "Cardiology on duty",
      members,
      rota: [
        { from: start.toISOString(), until: iso(hour), on_duty: [anna.userId] },
        {
          from: new Date(start.getTime() + hour).toISOString(),
          until: iso(3 * hour),
          on_duty: [bert.userId],
        },
      ],
    });
    expect(overlap.status).toBe(400);
    expect(overlap.body.error).toMatch(/^rota\[1\]\.from: overlaps rota\[0\]/);
    expect((await call("GET", `${PATH}/bad-${id}`)).status).toBe(404);
    const refused = await auditA().find({ action: "department.refused", object: `bad-${id}` });
    expect(refused.map((r) => [r.actor, r.details.field])).toEqual([
      ["admin-token", "rota[1].from"],
      ["admin-token", "rota[1].from"],
    ]);
  });

  it("reaches only the member on duty, answers as the department, and audits who answered", async () => {
    const [anna, bert, gerda] = await Promise.all([user(0, "anna"), user(0, "bert"), user(1, "gerda")]);
    const [ac, bc, gc] = await Promise.all([net().client(anna), net().client(bert), net().client(gerda)]);
    const rota = (onDuty: string) => ({
      name: "Cardiology on duty",
      members: [anna.userId, bert.userId],
      rota: [{ from: iso(-hour), until: iso(8 * hour), on_duty: [onDuty] }],
    });
    const created = await call("PUT", `${PATH}/${id}`, rota(anna.userId));
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ user_id: deptUserId(), on_duty_now: [anna.userId] });
    expect(
      (await auditA().find({ action: "department.created", object: deptUserId() })).map((r) => r.actor),
    ).toEqual(["admin-token"]);

    // Gerda of B opens an (encrypted) conversation with the department account.
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
    const profile = await gc.getProfileInfo(deptUserId());
    expect(profile.displayname).toBe(`Cardiology on duty (${A().serverName})`);
    // Listed in the directory with its own entry, for B's clinicians too (A's FHIR HealthcareService).
    const found = await gc.searchUserDirectory({ term: "cardiology" });
    expect(found.results).toContainEqual({
      user_id: deptUserId(),
      display_name: `Cardiology on duty (${A().serverName})`,
      "org.medmesh.kind": "department",
    });

    const deskOf = async (eventId: string): Promise<string> => {
      const record = await waitUntil(
        async () =>
          (await auditA().find({ action: "department.message", object: roomId })).find(
            (r) => r.details.event_id === eventId,
          ),
        `the relay of ${eventId} is audited`,
        60_000,
      );
      expect(record).toMatchObject({ actor: gerda.userId, outcome: "relayed", on_behalf_of: deptUserId() });
      return String(record.details.desk_room_id);
    };
    const sees = (c: MatrixClient, room: string, text: string, who: string) =>
      waitForRoomEvent(c, room, (e) => e.getType() === "m.room.message" && bodyOf(e) === text, {
        description: who,
        timeoutMs: 60_000,
      });
    const replyAudited = async (actor: string): Promise<AuditRecord> =>
      waitUntil(
        async () => (await auditA().find({ action: "department.reply", actor, object: roomId }))[0],
        `the reply of ${actor} is audited`,
      );

    // 1. Anna is on duty: the message reaches her desk, not Bert.
    const first = `ECG question ${randomBytes(3).toString("hex")}`;
    const sent1 = await gc.sendTextMessage(roomId, first);
    const deskId = await deskOf(sent1.event_id);
    await waitForMembership(ac, deskId, "invite", { description: "Anna is invited to the desk" });
    await ac.joinRoom(deskId);
    await sees(ac, deskId, `${gerda.userId}: ${first}`, "Anna reads Gerda's message in the desk");
    expect(bc.getRoom(deskId)).toBeNull();
    // The room-admin bot is in the desk (retention, as in every room made through the proxy).
    await waitUntil(
      async () =>
        Object.keys((await ac.getJoinedRoomMembers(deskId)).joined).includes(`@medmesh:${A().serverName}`),
      "the room-admin bot joins the desk",
    );

    const answer1 = `Send the patient over ${randomBytes(3).toString("hex")}`;
    const reply1 = await ac.sendTextMessage(deskId, answer1);
    const got1 = await sees(gc, roomId, answer1, "Gerda gets Anna's answer");
    expect(got1.getSender()).toBe(deptUserId());
    expect(bodyOf(got1)).not.toContain("Anna"); // show_responder is off
    expect(await replyAudited(anna.userId)).toMatchObject({
      outcome: "sent",
      on_behalf_of: deptUserId(),
      details: {
        department: id,
        desk_room_id: deskId,
        desk_event_id: reply1.event_id,
        event_id: got1.getId(),
      },
    });

    // 2. The rota switches to Bert: the next message reaches him, and Anna is off the desk.
    expect((await call("PUT", `${PATH}/${id}`, rota(bert.userId))).body).toMatchObject({
      on_duty_now: [bert.userId],
    });
    const second = `Follow-up ${randomBytes(3).toString("hex")}`;
    const sent2 = await gc.sendTextMessage(roomId, second);
    expect(await deskOf(sent2.event_id)).toBe(deskId);
    await waitForMembership(bc, deskId, "invite", { description: "Bert is invited to the desk" });
    await bc.joinRoom(deskId);
    await sees(bc, deskId, `${gerda.userId}: ${second}`, "Bert reads the follow-up");
    await waitUntil(() => ac.getRoom(deskId)?.getMyMembership() === "leave", "Anna is removed from the desk");
    const annaSaw = ac.getRoom(deskId)?.getLiveTimeline().getEvents().map(bodyOf) ?? [];
    expect(annaSaw).not.toContain(`${gerda.userId}: ${second}`);

    const answer2 = `Bert here, on my way ${randomBytes(3).toString("hex")}`;
    await bc.sendTextMessage(deskId, answer2);
    const got2 = await sees(gc, roomId, answer2, "Gerda gets Bert's answer");
    expect(got2.getSender()).toBe(deptUserId());
    expect((await replyAudited(bert.userId)).details.event_id).toBe(got2.getId());
    // Gerda's room never had Anna or Bert in it: only the department account answered.
    const members = (await gc.getJoinedRoomMembers(roomId)).joined;
    expect(Object.keys(members)).not.toContain(anna.userId);
    expect(Object.keys(members)).not.toContain(bert.userId);
  });

  it("shows the departments in the console (nl), and a gap in the rota is refused there with the field", async () => {
    const chromium = await startChromium("departments");
    try {
      const admin = await registerWithPassword(A(), `dept-admin-${randomBytes(2).toString("hex")}`, true);
      const page = await chromium.page("nl-NL");
      await pageSignIn(page, A(), admin.localpart, admin.password);
      await openSection(page, "departments");
      await page.waitForSelector("#departments");
      expect(await text(page, "#departments")).toContain(deptUserId());
      expect(await text(page, "h1")).toBe("Afdelingsaccounts");
      expect(await capture(chromium, page, "01-departments-nl")).toEqual([]);

      // Inputs set as a person's typing ends (an input event each); datetime-local takes local time.
      const fill = (selector: string, index: number, value: string) =>
        page.evaluate(
          `(() => { const el = document.querySelectorAll(${JSON.stringify(selector)})[${String(index)}];
            el.value = ${JSON.stringify(value)}; el.dispatchEvent(new Event("input", { bubbles: true })); })()`,
        );
      await fill("#department-id", 0, `gap-${id}`);
      await fill("#department-name", 0, "Spoedeisende hulp");
      await fill("#department-members", 0, "anna\nbert");
      await fill(".shift-from", 0, "2030-01-01T08:00");
      await fill(".shift-until", 0, "2030-01-01T16:00");
      await fill(".shift-on-duty", 0, "anna");
      await page.click("#add-shift");
      await page.waitForFunction(`document.querySelectorAll(".shift-from").length === 2`);
      await fill(".shift-from", 1, "2030-01-01T17:00");
      await fill(".shift-until", 1, "2030-01-01T23:00");
      await fill(".shift-on-duty", 1, "bert");
      await page.click("#save-department");
      await page.waitForSelector("#departments-error");
      expect(await text(page, "#departments-error")).toMatch(/^rota\[1\]\.from: leaves a gap of 60 min/);
      expect(await capture(chromium, page, "02-department-gap-refused")).toEqual([]);
      expect(await auditA().find({ action: "console.department_refused", actor: admin.userId })).toHaveLength(
        1,
      );
      expect((await call("GET", `${PATH}/gap-${id}`)).status).toBe(404);
    } finally {
      await chromium.close();
    }
  });
});
