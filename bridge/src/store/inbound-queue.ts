import type { Knex } from "knex";
import type { InteropEvent } from "../interop/types.ts";
import type { Db } from "./db.ts";
import { queueTable, type QueueRow } from "./queue-table.ts";

export interface InboundRow extends QueueRow {
  /** Null once the event is in Matrix. */
  event: InteropEvent | null;
}

/**
 * vendor → Matrix (`interop_inbound`): each accepted vendor event, in order, until it is carried
 * into Matrix; its content goes then.
 */
export function inboundQueue(knex: Knex) {
  return {
    ...queueTable<InboundRow>(knex, {
      table: "interop_inbound",
      states: { done: "done", failed: "failed" },
      errorColumn: "error",
      createdColumn: "received_at",
      contentColumns: ["event"],
    }),
    /** Stores an accepted event (in the transaction of its idempotency record); its seq. */
    async accept(
      db: Db,
      e: { vendor: string; conversation_id: string; event: InteropEvent },
    ): Promise<number> {
      const [row] = await db("interop_inbound")
        .insert({ ...e, received_at: new Date() })
        .returning<{ seq: string }[]>("seq");
      return Number(row?.seq);
    },
  };
}
export type InboundQueue = ReturnType<typeof inboundQueue>;
