import type { AppserviceEvent, AuditLog } from "@medmesh/common";
import type { BridgeStore, Portal } from "../store/index.ts";
import type { Ghosts } from "./ghosts.ts";
import { auditPortal } from "./inbound.ts";
import type { MatrixSide } from "./matrix.ts";

/**
 * A Matrix user invited a ghost: the ghost joins; a room that is no portal yet becomes one (its
 * room ID is the conversation ID), and the vendor hears of the conversation or the new member.
 */
export function ghostInvites(d: { store: BridgeStore; ghosts: Ghosts; matrix: MatrixSide; audit: AuditLog }) {
  const userIdOf = async (userId: string): Promise<string> =>
    (await d.ghosts.remoteOf(userId))?.remoteId ?? userId;

  return async (e: AppserviceEvent & { content?: Record<string, unknown> }): Promise<void> => {
    const ghost = e.state_key ?? "";
    const remote = await d.ghosts.remoteOf(ghost);
    const roomId = e.room_id;
    if (!remote || !roomId || !e.sender) return;
    await d.matrix.join(ghost, roomId);
    await d.store.portals.addMember(roomId, ghost);
    const existing = await d.store.portals.byRoom(roomId);
    if (existing) {
      await d.store.outbound.enqueue(existing, `mx-${e.event_id ?? ""}`, {
        event: {
          type: "membership",
          conversation_id: existing.conversation_id,
          user_id: remote.remoteId,
          membership: "join",
        },
      });
      return;
    }
    const members = await Promise.all((await d.matrix.members(ghost, roomId)).map(userIdOf));
    const portal: Portal = { vendor: remote.vendor, conversation_id: roomId, room_id: roomId };
    const kind = e.content?.is_direct === true ? "direct" : "group";
    await d.store.transaction(async (trx) => {
      await d.store.portals.adoptRoom(trx, { vendor: remote.vendor, room_id: roomId, kind });
      await d.store.outbound.enqueue(
        portal,
        `mx-${e.event_id ?? roomId}`,
        {
          event: {
            type: "conversation.create",
            conversation_id: roomId,
            kind,
            creator: e.sender ?? "",
            members,
          },
        },
        trx,
      );
    });
    await auditPortal(d.audit, {
      roomId,
      vendor: remote.vendor,
      conversationId: roomId,
      createdBy: e.sender ?? "",
    });
  };
}
