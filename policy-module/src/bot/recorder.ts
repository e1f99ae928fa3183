import type { AppserviceEvent } from "@medmesh/common";
import type { Knex } from "knex";
import { createBotInbox, type RawEvent } from "./inbox.ts";
import { botRooms } from "./outbox.ts";

const MEMBER = "m.room.member";
/** What a bot reads: messages (encrypted or not) and others' memberships (a join releases waiting notices). */
const READ = new Set(["m.room.encrypted", "m.room.message", MEMBER]);

/**
 * Records an appservice transaction's events for the bots, on whichever replica received it,
 * before it is acknowledged: a bot's own memberships update `bot_rooms`; what others send in a
 * bot's rooms goes to that bot's inbox. Needs no bot client, so a replica that does not run the
 * bots records for the one that does. Returns the bots with new inbox rows.
 */
export function createBotRecorder(d: { knex: Knex; isBot(userId: string): boolean }) {
  const rooms = botRooms(d.knex);
  return async (events: readonly AppserviceEvent[], now = Date.now()): Promise<string[]> => {
    const candidates: RawEvent[] = [];
    for (const e of events) {
      if (!e.room_id || !e.event_id || !e.type) continue;
      if (e.type === MEMBER && typeof e.state_key === "string" && d.isBot(e.state_key)) {
        const membership = (e as { content?: { membership?: unknown } }).content?.membership;
        if (membership === "join") await rooms.joined(e.state_key, e.room_id);
        else if (membership === "leave" || membership === "ban") await rooms.left(e.state_key, e.room_id);
        continue;
      }
      if (READ.has(e.type)) candidates.push(e as unknown as RawEvent);
    }
    if (candidates.length === 0) return [];
    const botsIn = await rooms.botsIn(candidates.map((e) => e.room_id));
    const perBot = new Map<string, RawEvent[]>();
    for (const e of candidates)
      for (const bot of botsIn.get(e.room_id) ?? [])
        if (e.sender !== bot) perBot.set(bot, [...(perBot.get(bot) ?? []), e]);
    const woken: string[] = [];
    for (const [bot, mine] of perBot)
      if ((await createBotInbox(d.knex, bot).add(mine, now)) > 0) woken.push(bot);
    return woken;
  };
}
