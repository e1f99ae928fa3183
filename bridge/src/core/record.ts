import { RETENTION_REDACTION, type AppserviceEvent, type AuditLog } from "@medmesh/common";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { RedactionPurge } from "../lifecycle/index.ts";
import type { BridgeStore, Portal } from "../store/index.ts";
import type { BridgeCrypto } from "./crypto.ts";
import { ghostInvites } from "./ghost-invites.ts";
import type { Ghosts } from "./ghosts.ts";
import type { MatrixSide } from "./matrix.ts";
import { redactedBy, type ClearEvent, type MatrixToInterop } from "./to-interop.ts";

/**
 * Matrix → vendor, first half: each transaction event in a portal becomes an interop event in
 * the delivery queue (keyed by Matrix event ID, so a transaction Synapse sends again adds
 * nothing) before the transaction is acknowledged. A redaction also takes the bridge's copies of
 * what it removes (lifecycle/redactions.ts).
 */
type RawEvent = AppserviceEvent & {
  content?: Record<string, unknown>;
  redacts?: string;
  unsigned?: { age?: number };
};

export function recorder(d: {
  store: BridgeStore;
  ghosts: Ghosts;
  crypto: BridgeCrypto;
  matrix: MatrixSide;
  translate: MatrixToInterop;
  redactions: RedactionPurge;
  botUserId: string;
  audit: AuditLog;
  log: Logger;
  metrics: Registry;
}) {
  const { store } = d;
  const roomGhosts = (roomId: string) => store.portals.ghostsIn(roomId);
  const onGhostInvited = ghostInvites(d);

  /**
   * One Matrix event of a portal into the delivery queue (nothing for what the vendor is not
   * sent; a repeat adds nothing, events are keyed by ID). True when it added a row.
   */
  const recordEvent = async (
    portal: Portal,
    raw: RawEvent & { room_id: string; event_id: string },
    at: Date,
  ): Promise<boolean> => {
    const key = `mx-${raw.event_id}`;
    let clear: RawEvent = { content: {}, ...raw };
    if (raw.type === "m.room.encrypted") {
      const decrypted = await d.crypto
        .decrypt(raw.room_id, raw, await roomGhosts(raw.room_id))
        .catch(() => undefined);
      // Decrypted when its key arrives.
      if (!decrypted) return store.outbound.enqueue(portal, key, { encrypted: raw, at });
      clear = { ...raw, ...decrypted };
    }
    const event = await d.translate.toInterop(portal, clear as ClearEvent);
    const added = event ? await store.outbound.enqueue(portal, key, { event, at }) : false;
    // After the deletion is queued (it names the vendor's message ID, which the purge may forget).
    const redacted = redactedBy(clear as ClearEvent);
    if (redacted)
      await d.redactions.purge(portal, redacted, {
        retention: clear.content?.[RETENTION_REDACTION] === true,
        by: raw.sender ?? "",
      });
    return added;
  };

  const isEcho = (e: RawEvent) =>
    !e.sender ||
    d.ghosts.isGhost(e.sender) ||
    e.sender === d.botUserId ||
    (e.type === "m.room.member" && !!e.state_key && d.ghosts.isGhost(e.state_key));

  const record = async (
    events: readonly AppserviceEvent[],
    transaction: Readonly<Record<string, unknown>>,
  ): Promise<void> => {
    // Rows carry the moment Synapse handed the transaction over (latency is measured from there).
    const at = new Date();
    for (const raw of events as RawEvent[]) {
      if (!raw.room_id || !raw.event_id || !raw.sender) continue;
      if (raw.type === "m.room.member") d.matrix.membershipChanged(raw.room_id);
      if (raw.type === "m.room.member" && raw.state_key && d.ghosts.isGhost(raw.state_key)) {
        if (raw.content?.membership === "invite" && !d.ghosts.isGhost(raw.sender)) await onGhostInvited(raw);
        continue;
      }
      if (isEcho(raw)) continue;
      const portal = await store.portals.byRoom(raw.room_id);
      if (!portal) continue;
      const event = { ...raw, room_id: raw.room_id, event_id: raw.event_id };
      await recordEvent(portal, event, at);
    }
    await d.redactions.flush();
    const ephemeral = (transaction.ephemeral ?? transaction["de.sorunome.msc2409.ephemeral"] ?? []) as {
      type?: string;
      room_id?: string;
      content?: Record<string, Record<string, Record<string, unknown>>>;
    }[];
    for (const r of ephemeral) {
      if (r.type !== "m.receipt" || !r.room_id || !r.content) continue;
      const portal = await store.portals.byRoom(r.room_id);
      if (!portal) continue;
      for (const [eventId, receipts] of Object.entries(r.content))
        for (const userId of Object.keys(receipts["m.read"] ?? {})) {
          if (d.ghosts.isGhost(userId)) continue;
          await store.outbound.enqueue(portal, `mx-read-${eventId}-${userId}`, {
            event: {
              type: "receipt",
              conversation_id: portal.conversation_id,
              message_id: await d.translate.messageIdOf(portal.conversation_id, eventId),
              user_id: userId,
              receipt: "read",
            },
          });
        }
    }
  };

  return { record };
}
