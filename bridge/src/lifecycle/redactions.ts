import type { AuditLog } from "@medmesh/common";
import type { Logger } from "pino";
import type { BridgeStore, Portal } from "../store/index.ts";
import type { Removed } from "./metrics.ts";

interface Purged {
  event_id: string;
  outbound_content: number;
  files: number;
  message_ids: number;
}

/**
 * A redaction in a portal takes the bridge's copies of what it removed: the event's content in
 * the delivery queue (if not delivered yet: it then delivers nothing; the deletion follows it)
 * and the file it carried. The retention period's redactions (RETENTION_REDACTION) take the
 * message-ID mapping too (the message no longer exists for anyone) and are audited per room and
 * transaction, without content. Vendor events carried into Matrix hold no content any more, so
 * nothing of the event remains in interop_inbound.
 */
export function redactionPurge(d: { store: BridgeStore; audit: AuditLog; log: Logger; removed: Removed }) {
  /** Retention redactions handled since the last flush, by room (with the redactions' sender). */
  const pending = new Map<string, { by: string; portal: Portal; purged: Purged[] }>();

  const purge = async (portal: Portal, eventId: string, how: { retention: boolean; by: string }) => {
    const outbound = (await d.store.outbound.forgetContent(`mx-${eventId}`)) ? 1 : 0;
    const files = await d.store.media.forgetEvent(eventId);
    const messageIds = how.retention ? await d.store.messages.forgetEvent(eventId) : 0;
    const why = how.retention ? "retention_redaction" : "redaction";
    if (outbound) d.removed.inc({ what: "outbound_content", why }, outbound);
    if (files) d.removed.inc({ what: "media_rows", why }, files);
    if (messageIds) d.removed.inc({ what: "message_ids", why }, messageIds);
    if (!how.retention) return;
    const room = pending.get(portal.room_id) ?? { by: how.by, portal, purged: [] };
    room.purged.push({ event_id: eventId, outbound_content: outbound, files, message_ids: messageIds });
    pending.set(portal.room_id, room);
  };

  /** Audits what the retention redactions since the last flush took (before the transaction is acknowledged). */
  const flush = async (): Promise<void> => {
    const rooms = [...pending.entries()];
    pending.clear();
    for (const [roomId, { by, portal, purged }] of rooms) {
      await d.audit.record({
        actor: by,
        action: "bridge.retention_delete",
        object: roomId,
        outcome: "deleted",
        details: {
          vendor: portal.vendor,
          conversation_id: portal.conversation_id,
          event_ids: purged.map((p) => p.event_id),
          outbound_content: purged.reduce((n, p) => n + p.outbound_content, 0),
          files: purged.reduce((n, p) => n + p.files, 0),
          message_ids: purged.reduce((n, p) => n + p.message_ids, 0),
        },
      });
      d.log.info(
        { room_id: roomId, events: purged.length },
        "deleted the bridge's copies of messages the retention period ended",
      );
    }
  };

  return { purge, flush };
}
export type RedactionPurge = ReturnType<typeof redactionPurge>;
