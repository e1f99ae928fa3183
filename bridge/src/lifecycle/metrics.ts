import { Counter, type Registry } from "prom-client";

/** What the bridge removed from its store, by kind and reason (content is never in a label). */
export type Removed = Counter<"what" | "why">;

export function removedCounter(metrics: Registry): Removed {
  return new Counter({
    name: "medmesh_bridge_store_removed_total",
    help: "What the bridge removed from its store: what (outbound_content, outbound_rows, inbound_rows, media_rows, media_bytes, message_ids, requests, nonces), why (redaction, retention_redaction, retention_period, idempotency_window, nonce_expired, uploaded)",
    labelNames: ["what", "why"] as const,
    registers: [metrics],
  });
}
