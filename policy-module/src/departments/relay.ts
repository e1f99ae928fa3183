import type { AuditLog } from "@medmesh/common";
import { Preset, type MatrixClient } from "matrix-js-sdk";
import type { Logger } from "pino";
import type { Bot, BotContent, BotMessage } from "../bot/index.ts";
import { onDuty, type Department } from "./department.ts";
import { createFileRelay, FileTooLarge, tooLargeText } from "./files.ts";
import type { DepartmentsStore, Desk } from "./store.ts";

export interface RelayDeps {
  departmentId: string;
  store: DepartmentsStore;
  audit: AuditLog;
  /** MedMesh's own accounts (the room-admin bot): what they post is never relayed. */
  ignoredSenders: readonly string[];
  log: Logger;
  now: () => Date;
}

const STAFF_WAIT_MS = 15_000;

/**
 * What a department account does with a message: from an outside conversation it goes to that
 * conversation's desk (a private, encrypted room of the account and the members on duty, who are
 * invited and the others removed first); from a desk, an on-duty member's answer goes to the
 * outside conversation as the department account, the responder recorded in the audit log.
 * Answers to the sender (a notice in the same room) say why something was not passed on.
 */
export function createRelay(d: RelayDeps): {
  onMessage(bot: Bot, m: BotMessage): Promise<string | undefined>;
  restaff(bot: Bot, dept: Department): Promise<void>;
} {
  const audit = (
    dept: Department,
    actor: string,
    action: string,
    object: string,
    outcome: string,
    details: Record<string, unknown>,
  ) =>
    d.audit.record({
      actor,
      action,
      object,
      outcome,
      on_behalf_of: dept.user_id,
      details: { department: dept.id, ...details },
    });

  /**
   * The desk holds exactly the members on duty (besides the account and MedMesh's bots): the
   * others are removed first (a refused invite must not keep an off-duty member in), then the
   * missing invited. Answers who was added and removed.
   */
  const staff = async (client: MatrixClient, dept: Department, deskRoomId: string, duty: string[]) => {
    const keep = new Set([dept.user_id, ...d.ignoredSenders, ...duty]);
    const room = client.getRoom(deskRoomId);
    // The client syncs with lazy-loaded members: the whole list before deciding who is missing.
    await room?.loadMembersIfNeeded();
    const members = room?.getMembers() ?? [];
    const present = (u: string) =>
      members.some((m) => m.userId === u && (m.membership === "join" || m.membership === "invite"));
    const removed = members
      .filter((m) => !keep.has(m.userId) && (m.membership === "join" || m.membership === "invite"))
      .map((m) => m.userId);
    const added = duty.filter((u) => !present(u));
    for (const u of removed) await client.kick(deskRoomId, u, `Not on duty for ${dept.name} now`);
    for (const u of added) await client.invite(deskRoomId, u);
    // The room key goes to the members the client knows of: wait until its sync shows the change.
    const deadline = Date.now() + STAFF_WAIT_MS;
    for (;;) {
      const now = client.getRoom(deskRoomId)?.getMembers() ?? [];
      const state = (u: string) => now.find((m) => m.userId === u)?.membership;
      const settled =
        duty.every((u) => state(u) === "join" || state(u) === "invite") &&
        now.every((m) => keep.has(m.userId) || (m.membership !== "join" && m.membership !== "invite"));
      if (settled) return { added, removed };
      if (Date.now() > deadline)
        throw new Error(`desk ${deskRoomId} did not show the members on duty in time`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };

  /** One staffing of a desk at a time (a message and the shift change may meet); each change audited. */
  let staffing: Promise<unknown> = Promise.resolve();
  const restaffDesk = (
    client: MatrixClient,
    dept: Department,
    desk: Desk,
    duty: string[],
    trigger: "message" | "shift_change",
  ): Promise<void> => {
    const run = staffing.then(async () => {
      const { added, removed } = await staff(client, dept, desk.desk_room_id, duty);
      if (added.length > 0 || removed.length > 0)
        await audit(dept, dept.user_id, "department.restaffed", desk.desk_room_id, "ok", {
          desk_room_id: desk.desk_room_id,
          room_id: desk.room_id,
          added,
          removed,
          on_duty: duty,
          trigger,
        });
    });
    staffing = run.catch(() => undefined);
    return run;
  };

  const creatorListed = async (client: MatrixClient): Promise<boolean> => {
    const caps = await client.getCapabilities();
    const version = Number(caps["m.room_versions"]?.default ?? "10");
    return !(version >= 12);
  };

  const deskFor = async (
    client: MatrixClient,
    dept: Department,
    roomId: string,
    sender: string,
    duty: string[],
  ) => {
    const known = await d.store.deskOf(roomId);
    if (known) return known;
    const { room_id: deskRoomId } = await client.createRoom({
      preset: Preset.PrivateChat,
      name: `${dept.name}: ${sender}`,
      topic:
        "Messages to the department from this conversation; what you write here is answered as the department",
      // The room-admin bot administers the desk like every room made through the proxy (retention).
      invite: [...duty, ...d.ignoredSenders],
      // Only the account staffs the desk: members cannot bring in others (who would read along).
      power_level_content_override: {
        invite: 100,
        kick: 100,
        ban: 100,
        state_default: 100,
        // Room version 12 and later give the creator unlimited power and refuse it in `users`.
        users: Object.fromEntries(
          [...((await creatorListed(client)) ? [dept.user_id] : []), ...d.ignoredSenders].map((u) => [
            u,
            100,
          ]),
        ),
      },
      initial_state: [
        { type: "m.room.encryption", state_key: "", content: { algorithm: "m.megolm.v1.aes-sha2" } },
      ],
    });
    const desk: Desk = { room_id: roomId, department_id: dept.id, desk_room_id: deskRoomId };
    await d.store.addDesk(desk);
    return desk;
  };

  let files: ReturnType<typeof createFileRelay> | undefined;
  /** What goes into `roomId` for the message: the text given, or the file uploaded again (files.ts). */
  const contentOf = (bot: Bot, m: BotMessage, roomId: string, text: string): Promise<BotContent> =>
    m.kind === "text"
      ? Promise.resolve({ msgtype: "m.text", body: text })
      : (files ??= createFileRelay(bot.client)).content(m, roomId, text);
  /** A file that cannot be passed on: too large (the sender is told the limit), or not fetched/uploaded. */
  const fileRefusal = (err: unknown, dept: Department): { outcome: string; text: string } => {
    if (err instanceof FileTooLarge) return { outcome: "too_large", text: tooLargeText(dept.name, err) };
    d.log.warn({ err }, "a department could not pass on a file");
    return {
      outcome: "not_delivered",
      text: `${dept.name} could not pass on your file just now: it was not passed on. Please try again.`,
    };
  };

  const fromOutside = async (bot: Bot, dept: Department, m: BotMessage) => {
    const duty = onDuty(dept.rota, d.now());
    if (duty.length === 0) {
      await audit(dept, m.sender, "department.message", m.roomId, "nobody_on_duty", { event_id: m.eventId });
      return `Nobody of ${dept.name} is on duty right now: your message was not passed on.`;
    }
    const desk = await deskFor(bot.client, dept, m.roomId, m.sender, duty);
    try {
      await restaffDesk(bot.client, dept, desk, duty, "message");
    } catch (err) {
      // An invite refused (a member's invite settings) or Synapse away: the sender is told, not left waiting.
      d.log.warn({ err, room_id: desk.desk_room_id }, "could not staff a department desk");
      await audit(dept, m.sender, "department.message", m.roomId, "not_delivered", {
        event_id: m.eventId,
        desk_room_id: desk.desk_room_id,
        on_duty: duty,
      });
      return `${dept.name} could not reach the members on duty just now: your message was not passed on. Please try again or call.`;
    }
    let content: BotContent;
    try {
      content = await contentOf(
        bot,
        m,
        desk.desk_room_id,
        `${m.sender}: ${m.kind === "text" ? m.body : m.name}`,
      );
    } catch (err) {
      const refused = fileRefusal(err, dept);
      await audit(dept, m.sender, "department.message", m.roomId, refused.outcome, {
        event_id: m.eventId,
        desk_room_id: desk.desk_room_id,
        kind: m.kind,
      });
      return refused.text;
    }
    const relayed = await bot.send(desk.desk_room_id, content, `in:${m.eventId}`);
    await audit(dept, m.sender, "department.message", m.roomId, "relayed", {
      event_id: m.eventId,
      desk_room_id: desk.desk_room_id,
      desk_event_id: relayed,
      on_duty: duty,
      kind: m.kind,
    });
    return undefined;
  };

  const fromDesk = async (bot: Bot, dept: Department, desk: Desk, m: BotMessage) => {
    const duty = onDuty(dept.rota, d.now());
    if (!duty.includes(m.sender)) {
      await audit(dept, m.sender, "department.reply", desk.room_id, "refused_not_on_duty", {
        desk_room_id: desk.desk_room_id,
        desk_event_id: m.eventId,
      });
      return `You are not on duty for ${dept.name} now: your answer was not sent.`;
    }
    // A file keeps its name; a text answer is signed where the organisation chose so.
    const signed =
      m.kind !== "text"
        ? m.name
        : dept.show_responder
          ? `${m.body}\n— ${bot.client.getRoom(desk.desk_room_id)?.getMember(m.sender)?.name ?? m.sender}`
          : m.body;
    let content: BotContent;
    try {
      content = await contentOf(bot, m, desk.room_id, signed);
    } catch (err) {
      const refused = fileRefusal(err, dept);
      await audit(dept, m.sender, "department.reply", desk.room_id, refused.outcome, {
        desk_room_id: desk.desk_room_id,
        desk_event_id: m.eventId,
        kind: m.kind,
      });
      return refused.text;
    }
    const sent = await bot.send(desk.room_id, content, `out:${m.eventId}`);
    await audit(dept, m.sender, "department.reply", desk.room_id, "sent", {
      event_id: sent,
      desk_room_id: desk.desk_room_id,
      desk_event_id: m.eventId,
      responder_shown: dept.show_responder,
      kind: m.kind,
    });
    return undefined;
  };

  return {
    /**
     * Every desk of the department staffed with who is on duty now (the shift change): the same
     * staffing as before a message is relayed. A desk that fails is logged and audited; the others go on.
     */
    async restaff(bot, dept) {
      if (!(await d.store.get(dept.id))) return; // ended meanwhile
      const duty = onDuty(dept.rota, d.now());
      for (const desk of await d.store.desksOf(dept.id)) {
        try {
          await restaffDesk(bot.client, dept, desk, duty, "shift_change");
        } catch (err) {
          d.log.warn({ err, room_id: desk.desk_room_id }, "could not re-staff a department desk");
          await audit(dept, dept.user_id, "department.restaffed", desk.desk_room_id, "failed", {
            desk_room_id: desk.desk_room_id,
            room_id: desk.room_id,
            on_duty: duty,
            trigger: "shift_change",
            error: err instanceof Error ? err.message : String(err),
          });
        }
      }
    },
    async onMessage(bot, m) {
      if (d.ignoredSenders.includes(m.sender)) return undefined;
      const dept = await d.store.get(d.departmentId);
      if (!dept || m.sender === dept.user_id) return undefined;
      const desk = await d.store.deskByDeskRoom(m.roomId);
      if (desk) return fromDesk(bot, dept, desk, m);
      return fromOutside(bot, dept, m);
    },
  };
}
