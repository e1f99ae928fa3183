import type { Knex } from "knex";
import type { Department, DepartmentInput, Shift } from "./department.ts";

interface Row {
  id: string;
  user_id: string;
  name: string;
  members: string;
  rota: string;
  show_responder: boolean | number;
  updated_at: Date | string;
  retired_at: Date | string | null;
  closed_at: Date | string | null;
}

/** Where a department's ending stands: retired (nothing relayed), then closed (rooms left, account deactivated). */
export interface Retirement {
  department: Department;
  retired_at: string | null;
  closed_at: string | null;
}

export interface Desk {
  room_id: string;
  department_id: string;
  desk_room_id: string;
}

const fromRow = (r: Row): Department => ({
  id: r.id,
  user_id: r.user_id,
  name: r.name,
  members: JSON.parse(r.members) as string[],
  rota: JSON.parse(r.rota) as Shift[],
  show_responder: Boolean(r.show_responder),
  updated_at: new Date(r.updated_at).toISOString(),
});

const iso = (t: Date | string | null): string | null => (t === null ? null : new Date(t).toISOString());

/**
 * The `departments` and `department_desks` tables: their queries, in one place. A retired
 * department is neither listed nor found (`retirement` still reads it).
 */
export function departmentsStore(knex: Knex) {
  const departments = () => knex<Row>("departments");
  const current = () => departments().whereNull("retired_at");
  const desks = () => knex<Desk>("department_desks");
  return {
    async list(): Promise<Department[]> {
      return (await current().select().orderBy("id")).map(fromRow);
    },
    async get(id: string): Promise<Department | undefined> {
      const row: Row | undefined = await current().where({ id }).first();
      return row && fromRow(row);
    },
    /** A department whether retired or not, and where its ending stands. */
    async retirement(id: string): Promise<Retirement | undefined> {
      const row: Row | undefined = await departments().where({ id }).first();
      return (
        row && { department: fromRow(row), retired_at: iso(row.retired_at), closed_at: iso(row.closed_at) }
      );
    },
    /** From now on nothing is relayed (a second call keeps the first time). */
    async retire(id: string, now = new Date()): Promise<void> {
      await departments().where({ id }).whereNull("retired_at").update({ retired_at: now });
    },
    /** Its rooms left and its account deactivated: the ending is complete. */
    async closed(id: string, now = new Date()): Promise<void> {
      await departments().where({ id }).update({ closed_at: now });
    },
    /** Creates or replaces; answers whether it was new. */
    async put(id: string, userId: string, d: DepartmentInput, now = new Date()): Promise<boolean> {
      const row = {
        id,
        user_id: userId,
        name: d.name,
        members: JSON.stringify(d.members),
        rota: JSON.stringify(d.rota),
        show_responder: d.show_responder,
        updated_at: now,
      };
      return knex.transaction(async (trx) => {
        const existed = await trx<Row>("departments").where({ id }).first();
        if (existed) await trx<Row>("departments").where({ id }).update(row);
        else await trx<Row>("departments").insert(row);
        return !existed;
      });
    },
    async remove(id: string): Promise<boolean> {
      return (await departments().where({ id }).delete()) > 0;
    },
    async deskOf(roomId: string): Promise<Desk | undefined> {
      return desks().where({ room_id: roomId }).first();
    },
    async deskByDeskRoom(deskRoomId: string): Promise<Desk | undefined> {
      return desks().where({ desk_room_id: deskRoomId }).first();
    },
    async addDesk(desk: Desk, now = new Date()): Promise<void> {
      await desks().insert({ ...desk, created_at: now } as Desk);
    },
    async desksOf(departmentId: string): Promise<Desk[]> {
      return desks().where({ department_id: departmentId });
    },
  };
}
export type DepartmentsStore = ReturnType<typeof departmentsStore>;
