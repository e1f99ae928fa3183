import type { AppserviceEvent } from "@medmesh/common";
import type { Knex } from "knex";
import type { WebhookEvent } from "../interop/types.ts";
import { affected, type Db } from "./db.ts";
import { queueTable, type QueueRow } from "./queue-table.ts";

export interface OutboundRow extends QueueRow {
  created_at: Date | string;
  idempotency_key: string;
  event: WebhookEvent | null;
  encrypted: (AppserviceEvent & Record<string, unknown>) | null;
}

/**
 * Matrix → vendor (`bridge_outbound`): one row per Matrix event (its ID is the Idempotency-Key),
 * so a transaction Synapse sends again adds nothing. The event's content (clear, or still
 * encrypted) stays only until it is delivered.
 */
export function outboundQueue(knex: Knex) {
  return {
    ...queueTable<OutboundRow>(knex, {
      table: "bridge_outbound",
      states: { done: "delivered", failed: "dead" },
      errorColumn: "last_error",
      createdColumn: "created_at",
      contentColumns: ["event", "encrypted"],
    }),
    /** True when it added a row (a known key adds nothing). */
    async enqueue(
      to: { vendor: string; conversation_id: string },
      key: string,
      fields: { event?: WebhookEvent; encrypted?: unknown; at?: Date },
      db: Db = knex,
    ): Promise<boolean> {
      const added = await db("bridge_outbound")
        .insert({
          vendor: to.vendor,
          conversation_id: to.conversation_id,
          idempotency_key: key,
          event: fields.event ? JSON.stringify(fields.event) : null,
          encrypted: fields.encrypted ? JSON.stringify(fields.encrypted) : null,
          next_attempt_at: new Date(),
          created_at: fields.at ?? new Date(),
        })
        .onConflict("idempotency_key")
        .ignore()
        .returning("seq");
      return added.length > 0;
    },
    has: async (key: string): Promise<boolean> =>
      (await knex("bridge_outbound").where({ idempotency_key: key }).first("seq")) !== undefined,
    /** The event, now decrypted, replaces its ciphertext. */
    async setDecrypted(seq: string | number, event: WebhookEvent): Promise<void> {
      await knex("bridge_outbound")
        .where({ seq })
        .update({ event: JSON.stringify(event), encrypted: null });
    },
    /** Events waiting for a room key are due now (keys arrived). */
    async wakeEncrypted(): Promise<void> {
      await knex("bridge_outbound")
        .where({ state: "pending" })
        .whereNotNull("encrypted")
        .update({ next_attempt_at: new Date() });
    },
    /**
     * The Matrix event was redacted: its content goes, whatever the row's state (a pending row
     * then delivers nothing; the deletion follows it). True when there was content to drop.
     */
    async forgetContent(key: string): Promise<boolean> {
      const n = affected(
        await knex("bridge_outbound")
          .where({ idempotency_key: key })
          .where((q) => {
            void q.whereNotNull("event").orWhereNotNull("encrypted");
          })
          .update({ event: null, encrypted: null }),
      );
      return n > 0;
    },
  };
}
export type OutboundQueue = ReturnType<typeof outboundQueue>;
