import type { SynapseAdmin } from "./admin-session.ts";

export interface RoomStateEvent {
  type: string;
  state_key: string;
  sender: string;
  content: Record<string, unknown>;
}

/**
 * A room's current state events of these types with the empty state key, by type. One admin
 * request per type (`?type=`): a room's full state holds every member (and each one's badge), so
 * reading it at each decision cost a channel of 2,800 members minutes per join.
 * Throws MatrixRequestError 404 where Synapse does not know the room.
 */
export async function roomStateOf(
  admin: SynapseAdmin,
  roomId: string,
  types: readonly string[],
): Promise<Map<string, RoomStateEvent>> {
  const answers = await Promise.all(
    types.map((type) =>
      admin.request<{ state: RoomStateEvent[] }>(
        "GET",
        `/_synapse/admin/v1/rooms/${encodeURIComponent(roomId)}/state?type=${encodeURIComponent(type)}`,
      ),
    ),
  );
  const out = new Map<string, RoomStateEvent>();
  for (const { state } of answers) for (const e of state) if (e.state_key === "") out.set(e.type, e);
  return out;
}
