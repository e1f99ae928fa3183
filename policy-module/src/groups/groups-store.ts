import type { Knex } from "knex";
import { KNOCKABLE, type GroupListing } from "./listing.ts";

/** A room of this organisation as the group directory knows it (its current state at Synapse). */
export interface GroupEntry extends GroupListing {
  room_id: string;
  name?: string | undefined;
  topic?: string | undefined;
  join_rule?: string | undefined;
  members: number;
}

interface Row {
  room_id: string;
  listed: boolean | number;
  scope: string;
  professions: string;
  name: string | null;
  topic: string | null;
  description: string | null;
  join_rule: string | null;
  members: number | string;
}

const fromRow = (r: Row): GroupEntry => ({
  room_id: r.room_id,
  listed: Boolean(r.listed),
  scope: r.scope === "network" ? "network" : "organisation",
  professions: JSON.parse(r.professions) as string[],
  ...(r.name === null ? {} : { name: r.name }),
  ...(r.topic === null ? {} : { topic: r.topic }),
  ...(r.description === null ? {} : { description: r.description }),
  ...(r.join_rule === null ? {} : { join_rule: r.join_rule }),
  members: Number(r.members),
});

/** The `groups_listed` table: its queries, in one place. */
export function groupsStore(knex: Knex) {
  const table = () => knex<Row>("groups_listed");
  return {
    async get(roomId: string): Promise<GroupEntry | undefined> {
      const row: Row | undefined = await table().where({ room_id: roomId }).first();
      return row && fromRow(row);
    },
    async put(e: GroupEntry): Promise<void> {
      const row = {
        room_id: e.room_id,
        listed: e.listed,
        scope: e.scope,
        professions: JSON.stringify(e.professions),
        name: e.name ?? null,
        topic: e.topic ?? null,
        description: e.description ?? null,
        join_rule: e.join_rule ?? null,
        members: e.members,
        updated_at: new Date(),
      };
      await table().insert(row).onConflict("room_id").merge();
    },
    async remove(roomId: string): Promise<void> {
      await table().where({ room_id: roomId }).delete();
    },
    /** Every listed room, whatever its join rule (the console shows those a join rule keeps out too). */
    async allListed(limit: number): Promise<GroupEntry[]> {
      const rows = await table().where({ listed: true }).orderBy("name").limit(limit);
      return rows.map(fromRow);
    },
    /** Listed rooms people can ask to join; `network`: only those listed for every trusted organisation. */
    async listed(opts: { networkOnly: boolean; search?: string; limit: number }): Promise<GroupEntry[]> {
      let q = table()
        .where({ listed: true })
        .whereIn("join_rule", [...KNOCKABLE]);
      if (opts.networkOnly) q = q.andWhere({ scope: "network" });
      if (opts.search) {
        const like = `%${opts.search.toLowerCase()}%`;
        q = q.andWhere((w) => {
          void w
            .whereRaw("lower(coalesce(name, '')) LIKE ?", [like])
            .orWhereRaw("lower(coalesce(topic, '')) LIKE ?", [like])
            .orWhereRaw("lower(coalesce(description, '')) LIKE ?", [like]);
        });
      }
      const rows = await q.orderBy("name").limit(opts.limit);
      return rows.map(fromRow);
    },
  };
}
export type GroupsStore = ReturnType<typeof groupsStore>;
