import type { Knex } from "knex";

export interface IndexedEvent {
  event_id: string;
  room_id: string;
  sender: string;
  type: string;
  origin_ts: number;
  media: string[];
}

interface Row extends Omit<IndexedEvent, "origin_ts"> {
  /** bigint: a string from PostgreSQL. */
  origin_ts: string | number;
  redacting_at: Date | null;
  redacted_at: Date | null;
  foreign_since?: Date | null;
}

/** Event types whose content the retention policy removes (state events are not messages). */
export const MESSAGE_TYPES = new Set([
  "m.room.message",
  "m.room.encrypted",
  "m.sticker",
  "m.reaction",
  "m.poll.start",
  "m.poll.response",
  "m.poll.end",
  "org.matrix.msc3381.poll.start",
  "org.matrix.msc3381.poll.response",
  "org.matrix.msc3381.poll.end",
]);

/** mxc:// URIs an unencrypted event refers to (encrypted events carry theirs inside the ciphertext). */
export function mediaOf(content: unknown): string[] {
  const found = new Set<string>();
  const visit = (v: unknown, depth: number): void => {
    if (depth > 4 || typeof v !== "object" || v === null) return;
    for (const [k, x] of Object.entries(v)) {
      if ((k === "url" || k === "thumbnail_url") && typeof x === "string" && x.startsWith("mxc://"))
        found.add(x);
      else visit(x, depth + 1);
    }
  };
  visit(content, 0);
  return [...found];
}

/** mxc:// URIs a state event names (a member's avatar_url, a room avatar's url, …). */
export function stateMediaOf(content: unknown): string[] {
  const found = new Set(mediaOf(content));
  const avatar = (content as { avatar_url?: unknown } | null)?.avatar_url;
  if (typeof avatar === "string" && avatar.startsWith("mxc://")) found.add(avatar);
  return [...found];
}

/** The index entry for a client-format event, or undefined when it is not a message. */
export function indexEntry(e: {
  event_id?: string;
  room_id?: string;
  type: string;
  state_key?: string;
  sender?: string;
  origin_server_ts?: number;
  content?: unknown;
}): IndexedEvent | undefined {
  if (!e.event_id || !e.room_id || !MESSAGE_TYPES.has(e.type) || e.state_key !== undefined) return undefined;
  return {
    event_id: e.event_id,
    room_id: e.room_id,
    sender: e.sender ?? "",
    type: e.type,
    origin_ts: e.origin_server_ts ?? Date.now(),
    media: mediaOf(e.content),
  };
}

const toEvent = (r: Row): IndexedEvent & { redacting: boolean; foreign: boolean } => ({
  event_id: r.event_id,
  room_id: r.room_id,
  sender: r.sender,
  type: r.type,
  origin_ts: Number(r.origin_ts),
  media: r.media,
  redacting: r.redacting_at !== null,
  /** In a room another organisation administers: forgotten here, redacted there. */
  foreign: r.foreign_since != null,
});

/** The retention index: event metadata, keeps (pins) and per-room periods, in the service's store. */
export function retentionIndex(knex: Knex) {
  const events = () => knex<Row>("retention_events");
  return {
    async add(e: IndexedEvent): Promise<void> {
      await events().insert(e).onConflict("event_id").ignore();
    },
    /** How many events are indexed, waiting (not redacted) and kept: for operators and tests. */
    async status(): Promise<{ indexed: number; waiting: number; kept: number }> {
      const [all] = await events().count<{ n: string }[]>({ n: "*" });
      const [waiting] = await events().whereNull("redacted_at").count<{ n: string }[]>({ n: "*" });
      const [kept] = await knex("retention_keeps").count<{ n: string }[]>({ n: "*" });
      return { indexed: Number(all?.n ?? 0), waiting: Number(waiting?.n ?? 0), kept: Number(kept?.n ?? 0) };
    },
    /**
     * Expired, not yet redacted events, oldest first: the room's own period where it has one,
     * else the default; kept ones only once past the longest keep.
     */
    async due(now: number, defaultMs: number, maxKeepMs: number, limit: number) {
      const rows = await knex
        .select<Row[]>("e.*", "r.foreign_since")
        .from("retention_events as e")
        .leftJoin("retention_rooms as r", "r.room_id", "e.room_id")
        .leftJoin("retention_keeps as k", function () {
          this.on("k.room_id", "=", "e.room_id").andOn("k.event_id", "=", "e.event_id");
        })
        .whereNull("e.redacted_at")
        // The partial index answers this bound; the per-room period only narrows it.
        .where("e.origin_ts", "<", now - Math.min(defaultMs, await shortestRoomPeriod(knex, defaultMs)))
        .whereRaw("e.origin_ts < ? - coalesce(r.period_ms, ?)", [now, defaultMs])
        .whereRaw("(k.event_id IS NULL OR e.origin_ts < ?)", [now - maxKeepMs])
        .orderBy("e.origin_ts")
        .limit(limit);
      return rows.map(toEvent);
    },
    async markRedacting(eventId: string, at: Date): Promise<void> {
      await events().where({ event_id: eventId }).update({ redacting_at: at });
    },
    async markRedacted(eventId: string, at: Date): Promise<void> {
      await events().where({ event_id: eventId }).update({ redacted_at: at });
    },
    /**
     * The oldest message of a room that stays (kept, not yet expired, or not redacted for another
     * reason): local history before it may be purged.
     */
    async firstToStay(roomId: string): Promise<string | undefined> {
      const row: { event_id: string } | undefined = await events()
        .where({ room_id: roomId })
        .whereNull("redacted_at")
        .orderBy("origin_ts")
        .first("event_id");
      return row?.event_id;
    },
    /** What a sweep marked done since it started (a resumed sweep purges and deletes media for all of it). */
    async redactedSince(at: Date): Promise<{ room_id: string; media: string[] }[]> {
      return events().where("redacted_at", ">=", at).select("room_id", "media");
    },
    /** Of these event IDs, the ones the index holds. */
    async known(eventIds: readonly string[]): Promise<Set<string>> {
      if (eventIds.length === 0) return new Set();
      const rows = await events()
        .whereIn("event_id", [...eventIds])
        .select("event_id");
      return new Set(rows.map((r) => r.event_id));
    },
    /** Of these media, the ones no unredacted indexed event still refers to. */
    async unreferenced(media: readonly string[]): Promise<string[]> {
      const used = await this.referenced(media);
      return media.filter((m) => !used.has(m));
    },
    async pins(roomId: string): Promise<Map<string, string>> {
      const rows = await knex("retention_keeps")
        .where({ room_id: roomId })
        .select<{ event_id: string; kept_by: string }[]>("event_id", "kept_by");
      return new Map(rows.map((r) => [r.event_id, r.kept_by]));
    },
    async keep(roomId: string, eventId: string, by: string, at: Date): Promise<void> {
      await knex("retention_keeps")
        .insert({ room_id: roomId, event_id: eventId, kept_by: by, kept_at: at })
        .onConflict(["room_id", "event_id"])
        .ignore();
    },
    async unkeep(roomId: string, eventId: string): Promise<void> {
      await knex("retention_keeps").where({ room_id: roomId, event_id: eventId }).delete();
    },
    async roomPeriod(roomId: string): Promise<number | undefined> {
      const row = await knex("retention_rooms")
        .where({ room_id: roomId })
        .first<{ period_ms: string | null } | undefined>("period_ms");
      return row?.period_ms == null ? undefined : Number(row.period_ms);
    },
    async isBackfilled(roomId: string): Promise<boolean> {
      const row = await knex("retention_rooms")
        .where({ room_id: roomId })
        .whereNotNull("backfilled_at")
        .first<{ room_id: string } | undefined>("room_id");
      return row !== undefined;
    },
    async markBackfilled(roomId: string, at: Date): Promise<void> {
      await knex("retention_rooms")
        .insert({ room_id: roomId, backfilled_at: at })
        .onConflict("room_id")
        .merge(["backfilled_at"]);
    },
    /** Of these media, the ones an unredacted indexed event (or a keep) still refers to. */
    async referenced(media: readonly string[]): Promise<Set<string>> {
      if (media.length === 0) return new Set();
      const rows = await events()
        .whereNull("redacted_at")
        .whereRaw("media && ?::text[]", [[...media]])
        .select("media");
      return new Set(rows.flatMap((r) => r.media));
    },
    /** Media room state refers to (avatars): recorded as state events pass, never deleted. */
    async addStateMedia(mxcs: readonly string[], roomId: string, type: string, at: Date): Promise<void> {
      if (mxcs.length === 0) return;
      await knex("retention_state_media")
        .insert(mxcs.map((mxc) => ({ mxc, room_id: roomId, type, seen_at: at })))
        .onConflict("mxc")
        .ignore();
    },
    /** Of these media, the ones room state refers to. */
    async inState(media: readonly string[]): Promise<Set<string>> {
      if (media.length === 0) return new Set();
      const rows = await knex("retention_state_media")
        .whereIn("mxc", [...media])
        .select<{ mxc: string }[]>("mxc");
      return new Set(rows.map((r) => r.mxc));
    },
    /** Media of kept, unredacted messages: protected from deletion by date while the keep lasts. */
    async keptMedia(): Promise<string[]> {
      const rows = await knex
        .select<{ media: string[] }[]>("e.media")
        .from("retention_events as e")
        .join("retention_keeps as k", function () {
          this.on("k.room_id", "=", "e.room_id").andOn("k.event_id", "=", "e.event_id");
        })
        .whereNull("e.redacted_at")
        .whereRaw("cardinality(e.media) > 0");
      return [...new Set(rows.flatMap((r) => r.media))];
    },
    /** A room another organisation administers; `from` is where its history was read up to. */
    async markForeign(roomId: string, from: string | undefined, at: Date): Promise<void> {
      await knex("retention_rooms")
        .insert({ room_id: roomId, foreign_since: at, foreign_from: from ?? null, backfilled_at: at })
        .onConflict("room_id")
        .merge(["foreign_since", "foreign_from", "backfilled_at"]);
    },
    async foreignRooms(): Promise<{ room_id: string; from: string | null }[]> {
      const rows = await knex("retention_rooms")
        .whereNotNull("foreign_since")
        .select<{ room_id: string; foreign_from: string | null }[]>("room_id", "foreign_from");
      return rows.map((r) => ({ room_id: r.room_id, from: r.foreign_from }));
    },
    async setForeignFrom(roomId: string, from: string): Promise<void> {
      await knex("retention_rooms").where({ room_id: roomId }).update({ foreign_from: from });
    },
    async setRoomPeriod(roomId: string, periodMs: number | null): Promise<void> {
      await knex("retention_rooms")
        .insert({ room_id: roomId, period_ms: periodMs })
        .onConflict("room_id")
        .merge(["period_ms"]);
    },
  };
}
export type RetentionIndex = ReturnType<typeof retentionIndex>;

async function shortestRoomPeriod(knex: Knex, fallback: number): Promise<number> {
  const row = await knex("retention_rooms").min<{ p: string | null }>({ p: "period_ms" }).first();
  return row?.p == null ? fallback : Number(row.p);
}
