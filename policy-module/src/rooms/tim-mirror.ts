import type { AppserviceEvent } from "@medmesh/common";
import type { Logger } from "pino";
import { handledEvents } from "../handled-events.ts";
import { TIM_ROOM_NAME, TIM_ROOM_TOPIC } from "./tim.ts";

const MIRRORS: Record<string, { type: string; field: "name" | "topic" } | undefined> = {
  "m.room.name": { type: TIM_ROOM_NAME, field: "name" },
  "m.room.topic": { type: TIM_ROOM_TOPIC, field: "topic" },
};

/** The TI-M copy a name or topic change needs, or undefined (not one, or already equal). */
export function timMirrorOf(
  e: AppserviceEvent & { content?: Record<string, unknown> },
): { type: string; content: Record<string, unknown> } | undefined {
  const mirror = MIRRORS[e.type];
  if (!mirror || e.state_key !== "") return undefined;
  const value = e.content?.[mirror.field];
  return { type: mirror.type, content: typeof value === "string" ? { [mirror.field]: value } : {} };
}

/**
 * TI-M: `de.gematik.tim.room.name` and `.topic` stay equal to `m.room.name` and `m.room.topic`.
 * Set at creation by the room defaults (rooms/tim.ts); a later change is copied by MedMesh's room
 * bot, which is admin of every room created through the proxy (a reaction, so the appservice role).
 */
export interface TimMirror {
  onEvents(events: readonly AppserviceEvent[]): Promise<void>;
}

export function createTimMirror(deps: {
  homeserverUrl: string;
  asToken: string;
  botUserId: string;
  log: Logger;
}): TimMirror {
  const handled = handledEvents();
  const stateUrl = (roomId: string, type: string) => {
    const url = new URL(
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/${encodeURIComponent(type)}/`,
      deps.homeserverUrl,
    );
    url.searchParams.set("user_id", deps.botUserId);
    return url;
  };
  const headers = { authorization: `Bearer ${deps.asToken}`, "content-type": "application/json" };
  const stateOf = async (roomId: string, type: string): Promise<Record<string, unknown> | undefined> => {
    const res = await fetch(stateUrl(roomId, type), { headers, signal: AbortSignal.timeout(15_000) });
    return res.ok ? ((await res.json()) as Record<string, unknown>) : undefined;
  };
  const copy = async (roomId: string, wanted: { type: string; content: Record<string, unknown> }) => {
    const current = await stateOf(roomId, wanted.type);
    // Equal already (set at creation with the same name): no second event.
    if (current !== undefined && JSON.stringify(current) === JSON.stringify(wanted.content)) return;
    const res = await fetch(stateUrl(roomId, wanted.type), {
      method: "PUT",
      headers,
      body: JSON.stringify(wanted.content),
      signal: AbortSignal.timeout(15_000),
    });
    if (!res.ok) deps.log.warn({ room_id: roomId, status: res.status }, "TI-M name/topic copy failed");
  };
  return {
    async onEvents(events: readonly AppserviceEvent[]): Promise<void> {
      for (const e of events as (AppserviceEvent & { content?: Record<string, unknown> })[]) {
        if (!e.room_id || handled.has(e.event_id)) continue;
        try {
          const wanted = timMirrorOf(e);
          if (wanted && e.sender !== deps.botUserId) await copy(e.room_id, wanted);
          // The bot joins after the room exists: a change made before it joined is copied now.
          if (
            e.type === "m.room.member" &&
            e.state_key === deps.botUserId &&
            e.content?.membership === "join"
          ) {
            for (const type of ["m.room.name", "m.room.topic"]) {
              const content = await stateOf(e.room_id, type);
              const missed = content && timMirrorOf({ type, state_key: "", content });
              if (missed) await copy(e.room_id, missed);
            }
          }
          handled.add(e.event_id);
        } catch (err) {
          deps.log.warn({ err, room_id: e.room_id }, "TI-M name/topic copy failed");
        }
      }
    },
  };
}
