import { MatrixRequestError, type SynapseAdmin } from "@medmesh/common";
import type { Logger } from "pino";
import type { Bot } from "../bot/index.ts";
import type { Department } from "./department.ts";
import type { DepartmentsStore } from "./store.ts";

/** What ending a department did. */
export interface Closing {
  /** The outside conversations told and left. */
  conversations: string[];
  /** The desks emptied and left. */
  desks: string[];
  /** The members on duty removed from the desks. */
  removed: string[];
}

/** The notice left in each outside conversation before the account leaves it. */
export const closedNotice = (displayName: string): string =>
  `${displayName} is closed: this account no longer reads or answers messages. Please contact the organisation another way.`;

/**
 * A department's ending, after it was marked retired (nothing is relayed any more): each outside
 * conversation gets a notice and is left, each desk is emptied and left, then the Synapse account
 * is deactivated without erasure (what it sent stays readable; its name stays on its events).
 * Every step can run again: a notice carries a transaction ID derived from the room, rooms already
 * left are not in the list, and a deactivated account is not logged in to again.
 */
export async function closeDepartment(d: {
  dept: Department;
  displayName: string;
  /** The account's client; undefined when it can no longer log in (deactivated by an earlier try). */
  bot: Bot | undefined;
  store: DepartmentsStore;
  admin: SynapseAdmin;
  /** MedMesh's own accounts in every room (the room-admin bot): never removed. */
  keep: readonly string[];
  log: Logger;
}): Promise<Closing> {
  const closing: Closing = { conversations: [], desks: [], removed: [] };
  const client = d.bot?.client;
  if (d.bot && client) {
    const { joined_rooms: rooms } = await client.getJoinedRooms();
    for (const roomId of rooms) {
      const desk = await d.store.deskByDeskRoom(roomId);
      if (desk) {
        const room = client.getRoom(roomId);
        await room?.loadMembersIfNeeded();
        for (const m of room?.getMembers() ?? []) {
          if (m.userId === d.dept.user_id || d.keep.includes(m.userId)) continue;
          if (m.membership !== "join" && m.membership !== "invite") continue;
          await client.kick(roomId, m.userId, `${d.dept.name} was ended`);
          closing.removed.push(m.userId);
        }
        closing.desks.push(roomId);
      } else {
        await d.bot.send(
          roomId,
          { msgtype: "m.notice", body: closedNotice(d.displayName) },
          `retired:${roomId}`,
        );
        closing.conversations.push(roomId);
      }
      await client.leave(roomId);
    }
    d.bot.stop();
  }
  await d.admin
    .request("POST", `/_synapse/admin/v1/deactivate/${encodeURIComponent(d.dept.user_id)}`, { erase: false })
    .catch((err: unknown) => {
      // Never created in Synapse (the account never started): nothing to deactivate.
      if (err instanceof MatrixRequestError && err.status === 404) return;
      throw err;
    });
  return closing;
}
