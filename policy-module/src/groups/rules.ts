import type { Decision } from "../proxy/policy.ts";
import { serverOf } from "../proxy/policy.ts";
import type { GroupEntry } from "./groups-store.ts";
import { KNOCKABLE } from "./listing.ts";

export interface MembershipQuestion {
  user_id: string;
  room_id: string;
  membership: "knock" | "join" | "invite";
}

export interface GroupRulesDeps {
  serverName: string;
  /**
   * The room's listing: this organisation's index, or the room's state at this server's Synapse;
   * `known: false` where this server does not take part in the room (its servers decide).
   */
  listingOf(roomId: string): Promise<{ known: boolean; entry?: GroupEntry | undefined }>;
  /** A verified clinician's registered profession (own record or their organisation's attestation); undefined: not verified. */
  professionOf(userId: string): Promise<string | undefined>;
  /** The organisation's room-admin bot: in every room it administers, groups included. */
  botUserId: string;
}

const ALLOWED: Decision = { allowed: true };
const refuse = (reason: string): Decision => ({ allowed: false, reason });
const title = (g: GroupEntry) => (g.name ? `"${g.name}"` : "This group");

/**
 * Who may ask to join (knock) and who may join a group of the directory. A knock needs a listed
 * group; a group limited to professions admits only verified clinicians of those professions —
 * decided at the knock, the invite and the join, whichever path they take.
 */
export function createGroupRules(d: GroupRulesDeps) {
  /** Whether this person may be in the group, or ask to. */
  const eligible = async (g: GroupEntry, userId: string, asking: boolean): Promise<Decision> => {
    if (!asking && g.professions.length === 0) return ALLOWED;
    const profession = await d.professionOf(userId);
    if (profession === undefined) {
      return refuse(
        asking
          ? `Only verified clinicians can ask to join groups in the directory; ${userId} is not verified`
          : `${title(g)} is for verified ${g.professions.join(", ")}s only; ${userId} is not verified`,
      );
    }
    if (g.professions.length > 0 && !g.professions.includes(profession)) {
      return refuse(
        `${title(g)} is for ${g.professions.join(", ")} only; ${userId} is registered as ${profession}`,
      );
    }
    return ALLOWED;
  };

  return {
    async membership(q: MembershipQuestion): Promise<Decision> {
      if (q.user_id === d.botUserId) return ALLOWED;
      const { known, entry: g } = await d.listingOf(q.room_id);
      if (!known) return ALLOWED;
      if (q.membership === "knock") {
        if (!g?.listed || !KNOCKABLE.has(g.join_rule ?? "")) {
          return refuse(
            "This room is not listed in the group directory and takes no requests to join: ask a member to invite you",
          );
        }
        if (g.scope === "organisation" && serverOf(q.user_id) !== d.serverName) {
          return refuse(`${title(g)} is listed for its own organisation's clinicians only`);
        }
        return eligible(g, q.user_id, true);
      }
      return g?.listed ? eligible(g, q.user_id, false) : ALLOWED;
    },
  };
}
export type GroupRules = ReturnType<typeof createGroupRules>;
