import type { Knex } from "knex";
import type { ChannelSpec } from "./spec.ts";

export interface Channel extends ChannelSpec {
  room_id: string;
  created_by: string;
  created_at: Date;
}

export interface ChannelPost {
  event_id: string;
  room_id: string;
  sender: string;
  urgent: boolean;
  sent_at: Date;
}

interface ChannelRow {
  room_id: string;
  name: string;
  scope: string;
  organisations: string;
  professions: string;
  publishers: string;
  mandatory: boolean | number;
  created_by: string;
  created_at: Date | string;
}

const fromRow = (r: ChannelRow): Channel => ({
  room_id: r.room_id,
  name: r.name,
  scope: r.scope === "network" ? "network" : "organisation",
  organisations: JSON.parse(r.organisations) as string[],
  professions: JSON.parse(r.professions) as string[],
  publishers: JSON.parse(r.publishers) as string[],
  mandatory: Boolean(r.mandatory),
  created_by: r.created_by,
  created_at: new Date(r.created_at),
});

/** The `channels` and `channel_posts` tables: their queries, in one place. */
export function channelsStore(knex: Knex) {
  const channels = () => knex<ChannelRow>("channels");
  const posts = () => knex("channel_posts");
  return {
    async add(c: Channel): Promise<void> {
      await channels().insert({
        room_id: c.room_id,
        name: c.name,
        scope: c.scope,
        organisations: JSON.stringify(c.organisations),
        professions: JSON.stringify(c.professions),
        publishers: JSON.stringify(c.publishers),
        mandatory: c.mandatory,
        created_by: c.created_by,
        created_at: c.created_at,
      });
    },
    async get(roomId: string): Promise<Channel | undefined> {
      const row: ChannelRow | undefined = await channels().where({ room_id: roomId }).first();
      return row && fromRow(row);
    },
    async all(): Promise<Channel[]> {
      const rows: ChannelRow[] = await channels().select().orderBy("created_at");
      return rows.map(fromRow);
    },
    async reconciled(roomId: string, at: Date): Promise<void> {
      await channels()
        .where({ room_id: roomId })
        .update({ reconciled_at: at } as never);
    },
    async addPost(p: ChannelPost): Promise<void> {
      await posts().insert(p).onConflict("event_id").ignore();
    },
    async post(eventId: string): Promise<ChannelPost | undefined> {
      const row = (await posts().where({ event_id: eventId }).first()) as
        | (Omit<ChannelPost, "urgent" | "sent_at"> & { urgent: boolean | number; sent_at: Date | string })
        | undefined;
      return row && { ...row, urgent: Boolean(row.urgent), sent_at: new Date(row.sent_at) };
    },
    async urgentPosts(roomId: string, limit = 50): Promise<ChannelPost[]> {
      const rows = (await posts()
        .where({ room_id: roomId, urgent: true })
        .orderBy("sent_at", "desc")
        .limit(limit)) as (Omit<ChannelPost, "urgent" | "sent_at"> & { sent_at: Date | string })[];
      return rows.map((r) => ({ ...r, urgent: true, sent_at: new Date(r.sent_at) }));
    },
  };
}
export type ChannelsStore = ReturnType<typeof channelsStore>;
