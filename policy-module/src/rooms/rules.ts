import type { Decision } from "../proxy/policy.ts";

export const MEGOLM = "m.megolm.v1.aes-sha2";

export interface RoomRulesPolicy {
  /** Join rule `public`: anyone on a trusted server could join without a member deciding. */
  allow_public_rooms: boolean;
}

export interface StateContent {
  type: string;
  state_key?: string | undefined;
  content: Record<string, unknown>;
}

const refuse = (reason: string): Decision => ({ allowed: false, reason });
const ALLOWED: Decision = { allowed: true };

/**
 * The room state MedMesh constrains, wherever it is set (createRoom's initial state or preset, a
 * later state event, a room upgrade, federation): E2EE is Megolm and stays on; history is never
 * readable by non-members; rooms are joined by invitation or knock unless the organisation allows
 * public rooms.
 */
export function checkRoomState(event: StateContent, policy: RoomRulesPolicy): Decision {
  const { content } = event;
  switch (event.type) {
    case "m.room.encryption":
      return content.algorithm === MEGOLM
        ? ALLOWED
        : refuse(
            `Rooms on this network are end-to-end encrypted with ${MEGOLM}; ` +
              `${typeof content.algorithm === "string" ? `"${content.algorithm}"` : "no algorithm"} is not allowed`,
          );
    case "m.room.history_visibility":
      return content.history_visibility === "world_readable"
        ? refuse("Room history readable by anyone (world_readable) is not allowed: only members read a room")
        : ALLOWED;
    case "m.room.join_rules":
      return content.join_rule === "public" && !policy.allow_public_rooms
        ? refuse(
            "Public rooms are not allowed by this organisation: people join by invitation or by knocking",
          )
        : ALLOWED;
    default:
      return ALLOWED;
  }
}

/** The join rule a createRoom preset (or its visibility, when no preset is given) implies. */
export function presetJoinRule(config: Record<string, unknown>): string | undefined {
  const preset =
    typeof config.preset === "string"
      ? config.preset
      : config.visibility === "public"
        ? "public_chat"
        : undefined;
  return preset === "public_chat" ? "public" : preset === undefined ? undefined : "invite";
}
