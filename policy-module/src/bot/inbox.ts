import type { DocumentStore } from "@medmesh/common";

/** A room event as Synapse pushes it to the appservice (client format). */
export type RawEvent = Readonly<Record<string, unknown>> & { event_id: string; room_id: string };

export interface InboxEntry {
  event: RawEvent;
  /** When it reached the inbox (ms): how long to wait for its room key is counted from here. */
  received_at: number;
}

interface Journal {
  pending: InboxEntry[];
  /** The most recent handled event IDs, so a resent transaction is not handled twice. */
  handled: string[];
}

export interface BotInbox {
  /** Records the events not seen before; durable when it returns (before the transaction's ack). */
  add(events: readonly RawEvent[], now?: number): Promise<number>;
  /** The oldest event not handled yet. */
  next(): Promise<InboxEntry | undefined>;
  /** The event was handled (or given up): it leaves the inbox and is remembered as handled. */
  done(eventId: string): Promise<void>;
}

/**
 * The bot's durable inbox in one document of the policy module's store: what the appservice
 * transactions brought for the bot waits here until it was handled, so the transaction can be
 * acknowledged at once (a room key may take a while) and a crash loses nothing.
 */
export function createBotInbox(documents: DocumentStore, userId: string, keepHandled = 1000): BotInbox {
  const key = `bot.inbox:${userId}`;
  const read = async (): Promise<Journal> => {
    const raw = await documents.get(key);
    return raw ? (JSON.parse(raw) as Journal) : { pending: [], handled: [] };
  };
  // Read-modify-write of one document: changes run one after another.
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const next = queue.then(fn, fn);
    queue = next.catch(() => undefined);
    return next;
  };
  return {
    add: (events, now = Date.now()) =>
      serial(async () => {
        const j = await read();
        const known = new Set([...j.handled, ...j.pending.map((p) => p.event.event_id)]);
        const fresh = events.filter((e) => !known.has(e.event_id) && known.add(e.event_id));
        if (fresh.length === 0) return 0;
        j.pending.push(...fresh.map((event) => ({ event, received_at: now })));
        await documents.put(key, JSON.stringify(j));
        return fresh.length;
      }),
    next: () => serial(async () => (await read()).pending[0]),
    done: (eventId) =>
      serial(async () => {
        const j = await read();
        j.pending = j.pending.filter((p) => p.event.event_id !== eventId);
        if (!j.handled.includes(eventId)) j.handled = [...j.handled, eventId].slice(-keepHandled);
        await documents.put(key, JSON.stringify(j));
      }),
  };
}
