import type { Decision } from "../proxy/policy.ts";
import type { Profile } from "./profile.ts";
import { MEGOLM, presetJoinRule } from "./rules.ts";

/** TI-M's room type, and its copies of the room's name and topic (TI-M clients read these). */
export const TIM_ROOM_TYPE = "de.gematik.tim.roomtype.default.v1";
export const TIM_ROOM_NAME = "de.gematik.tim.room.name";
export const TIM_ROOM_TOPIC = "de.gematik.tim.room.topic";

type Config = Record<string, unknown>;
interface State {
  type: string;
  state_key: string;
  content: Record<string, unknown>;
}

const refuse = (reason: string): Decision => ({ allowed: false, reason });
const ALLOWED: Decision = { allowed: true };

const objectOr = (v: unknown): Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

function initialState(config: Config): State[] {
  const list = Array.isArray(config.initial_state) ? (config.initial_state as unknown[]) : [];
  return list.flatMap((e) => {
    const o = objectOr(e);
    return typeof o.type === "string"
      ? [
          {
            type: o.type,
            state_key: typeof o.state_key === "string" ? o.state_key : "",
            content: objectOr(o.content),
          },
        ]
      : [];
  });
}

const stateOf = (config: Config, type: string): State | undefined =>
  initialState(config).find((e) => e.type === type && e.state_key === "");

/** The join rule the room starts with: initial_state wins over the preset (Synapse's order). */
export function startingJoinRule(config: Config): string {
  const set = stateOf(config, "m.room.join_rules")?.content.join_rule;
  return typeof set === "string" ? set : (presetJoinRule(config) ?? "invite");
}

/**
 * Whether the room starts end-to-end encrypted: an m.room.encryption in initial_state, or a
 * private preset, which Synapse encrypts (the generator sets encryption_enabled_by_default_for_room_type
 * to `invite` for TI-M organisations). A room upgrade (creation_content.predecessor) gets no
 * preset: only the state it copies counts.
 */
export function startsEncrypted(config: Config): boolean {
  if (stateOf(config, "m.room.encryption") !== undefined) return true;
  if (objectOr(config.creation_content).predecessor !== undefined) return false;
  const preset =
    typeof config.preset === "string"
      ? config.preset
      : config.visibility === "public"
        ? "public_chat"
        : "private_chat";
  return preset === "private_chat" || preset === "trusted_private_chat";
}

/**
 * What TI-M sets at room creation that MedMesh's defaults do not: the TI-M room type, history
 * visible from the invitation on, join by invitation, TI-M's copies of name and topic, and no
 * federation for a public room. Applied to the createRoom request before Synapse builds the room
 * (its on_create_room callback), on every path; what the client set itself is kept, and the
 * result is then checked by checkTimCreateRoom like any other request.
 */
export function timRoomDefaults(config: Config): Config {
  const creation = { ...objectOr(config.creation_content) };
  creation.type ??= TIM_ROOM_TYPE;
  const joinRule = startingJoinRule(config);
  if (joinRule === "public") creation["m.federate"] ??= false;
  const state = Array.isArray(config.initial_state) ? [...(config.initial_state as unknown[])] : [];
  const add = (type: string, content: Record<string, unknown>): void => {
    if (stateOf(config, type) === undefined) state.push({ type, state_key: "", content });
  };
  add("m.room.history_visibility", { history_visibility: "invited" });
  if (joinRule !== "public") add("m.room.join_rules", { join_rule: "invite" });
  const name = typeof config.name === "string" ? config.name : stateOf(config, "m.room.name")?.content.name;
  if (typeof name === "string") add(TIM_ROOM_NAME, { name });
  const topic =
    typeof config.topic === "string" ? config.topic : stateOf(config, "m.room.topic")?.content.topic;
  if (typeof topic === "string") add(TIM_ROOM_TOPIC, { topic });
  return { ...config, creation_content: creation, initial_state: state };
}

/**
 * TI-M's rules for a new room (createRoom on every path, and room upgrades): a private room is
 * end-to-end encrypted; a public room is unencrypted and does not federate (m.federate false), and
 * insured persons (tim-epa) create none.
 */
export function checkTimCreateRoom(config: Config, profile: Profile): Decision {
  const federates = objectOr(config.creation_content)["m.federate"] !== false;
  const encrypted = startsEncrypted(config);
  const encryption = stateOf(config, "m.room.encryption");
  if (encryption && encryption.content.algorithm !== MEGOLM) return ALLOWED; // the room rules refuse it
  if (startingJoinRule(config) !== "public") {
    return encrypted
      ? ALLOWED
      : refuse(
          "Private rooms on this TI-Messenger server are end-to-end encrypted: add m.room.encryption " +
            "to initial_state or use the private_chat preset",
        );
  }
  if (profile === "tim-epa") return refuse("Insured persons cannot create public rooms");
  if (encrypted) return refuse("Public rooms on this TI-Messenger server are not end-to-end encrypted");
  return federates
    ? refuse(
        "Public rooms on this TI-Messenger server do not federate: creation_content m.federate must be false",
      )
    : ALLOWED;
}

/**
 * The join rule `public` on a TI-M server: only in a room made public at its creation, which does
 * not federate and is not encrypted; so a later switch of a private room to public is refused
 * (private rooms federate and are encrypted). Insured persons have no public rooms.
 */
export function checkTimJoinRule(
  joinRule: unknown,
  profile: Profile,
  room: { federates?: boolean | undefined; encrypted?: boolean | undefined },
): Decision {
  if (joinRule !== "public") return ALLOWED;
  if (profile === "tim-epa") return refuse("Insured persons cannot have public rooms");
  return room.federates === false && room.encrypted === false
    ? ALLOWED
    : refuse(
        "A private room cannot be made public on this TI-Messenger server: public rooms are created " +
          "as such (unencrypted, m.federate false)",
      );
}

/**
 * End-to-end encryption added later (m.room.encryption in the state API): refused in a TI-M public
 * room, which by its create event does not federate and is not encrypted; public rooms stay
 * unencrypted. A room Synapse does not know yet (createRoom's own initial state, decided by
 * checkTimCreateRoom) sends no facts.
 */
export function checkTimEncryption(room: {
  federates?: boolean | undefined;
  encrypted?: boolean | undefined;
}): Decision {
  return room.federates === false && room.encrypted === false
    ? refuse(
        "Public rooms on this TI-Messenger server are not end-to-end encrypted: encryption cannot be " +
          "added to this room (m.federate false) later",
      )
    : ALLOWED;
}
