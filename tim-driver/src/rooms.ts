import type { Request, Router } from "express";
import { EventTimeline, EventType, type MatrixClient, type Room, type RoomState } from "matrix-js-sdk";
import type { DevicePool } from "./devices.ts";
import { DriverError, asyncRoute, badRequest, notFound } from "./errors.ts";

const MEMBERSHIPS = new Set(["knock", "invite", "join", "ban", "leave"]);
const JOIN_RULES = new Set(["public", "knock", "invite", "private", "restricted", "knock_restricted"]);
const HISTORY = new Set(["invited", "joined", "shared", "world_readable"]);

/** Polls until `probe` returns a value; the sync that reflects a change arrives shortly after. */
/**
 * Until the client's own copy of m.direct (its sync) shows the room: a sendMessage right after
 * reads that copy, and would make a second direct room.
 */
export const directRecorded = (client: MatrixClient, userId: string, roomId: string): Promise<true> =>
  until(() => {
    const direct = client.getAccountData(EventType.Direct)?.getContent<Record<string, string[]>>() ?? {};
    return direct[userId]?.includes(roomId) || undefined;
  }, `m.direct recording ${roomId}`);

export async function until<T>(probe: () => T | undefined, what: string, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new DriverError(504, "SYNC_TIMEOUT", `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The room's current state (what matrix-js-sdk's deprecated `room.currentState` is). */
export function stateOf(room: Room): RoomState {
  const state = room.getLiveTimeline().getState(EventTimeline.FORWARDS);
  if (!state) throw new DriverError(500, "NO_STATE", `room ${room.roomId} has no state yet`);
  return state;
}

/** The documented `Room`: its properties from the room state, and every member's membership. */
export function roomView(room: Room) {
  const state = stateOf(room);
  const content = (type: string): Record<string, unknown> | undefined =>
    state.getStateEvents(type, "")?.getContent();
  const joinRule = content(EventType.RoomJoinRules)?.join_rule;
  const history = content(EventType.RoomHistoryVisibility)?.history_visibility;
  const topic = content(EventType.RoomTopic)?.topic;
  const create = content(EventType.RoomCreate);
  const members = state
    .getMembers()
    .filter((m) => MEMBERSHIPS.has(m.membership ?? ""))
    .map((m) => ({ mxid: m.userId, membershipState: m.membership as string }));
  const me = room.client.getUserId();
  if (me && !members.some((m) => m.mxid === me) && MEMBERSHIPS.has(room.getMyMembership()))
    members.push({ mxid: me, membershipState: room.getMyMembership() });
  return {
    roomId: room.roomId,
    name:
      content(EventType.RoomName)?.name === undefined ? room.name : String(content(EventType.RoomName)?.name),
    ...(typeof topic === "string" ? { theme: topic } : {}),
    ...(typeof joinRule === "string" && JOIN_RULES.has(joinRule)
      ? { joinRule, roomAccess: joinRule === "public" ? "public" : "private" }
      : {}),
    ...(typeof history === "string" && HISTORY.has(history) ? { historyVisibility: history } : {}),
    ...(create ? { isFederated: create["m.federate"] !== false } : {}),
    isEncrypted: state.getStateEvents(EventType.RoomEncryption, "") !== null,
    roomVersion: room.getVersion(),
    members,
  };
}

export function requireRoom(client: MatrixClient, roomId: string | undefined): Room {
  const room = roomId ? client.getRoom(roomId) : null;
  if (!room) throw notFound(`room ${String(roomId)}`);
  return room;
}

const membershipIs = (client: MatrixClient, roomId: string, membership: string) => () => {
  const room = client.getRoom(roomId);
  return room?.getMyMembership() === membership ? room : undefined;
};

interface RoomProps {
  name?: unknown;
  theme?: unknown;
  roomAccess?: unknown;
  joinRule?: unknown;
  isFederated?: unknown;
  historyVisibility?: unknown;
  isEncrypted?: unknown;
  roomVersion?: unknown;
  invitedMembers?: unknown;
}

function invitees(value: unknown): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw badRequest("the invite list must be an array of {mxid}");
  return value.map((v) => {
    const id = (v as { mxid?: unknown }).mxid;
    if (typeof id !== "string" || !id.startsWith("@"))
      throw badRequest("every invitee needs an mxid (@user:server)");
    return id;
  });
}

const param = (req: Request, name: string): string => String(req.params[name]);

export function mountRooms(router: Router, pool: DevicePool): void {
  const session = (req: Request) => pool.use(param(req, "deviceId")).requireSession();

  router.get("/devices/:deviceId/rooms", (req, res) => {
    const { client } = session(req);
    const rooms = client.getRooms().filter((r) => ["join", "invite"].includes(r.getMyMembership()));
    res.json(rooms.map(roomView));
  });

  router.post(
    "/devices/:deviceId/rooms",
    asyncRoute(async (req, res) => {
      const { client } = session(req);
      const body = (req.body ?? {}) as RoomProps;
      if (typeof body.name !== "string") throw badRequest("name is required");
      const joinRule = body.joinRule ?? (body.roomAccess === "public" ? "public" : "invite");
      if (typeof joinRule !== "string" || !JOIN_RULES.has(joinRule))
        throw badRequest("joinRule is not a join rule");
      const initialState: { type: string; state_key: string; content: Record<string, unknown> }[] = [
        { type: EventType.RoomJoinRules, state_key: "", content: { join_rule: joinRule } },
      ];
      if (body.isEncrypted !== false)
        initialState.push({
          type: EventType.RoomEncryption,
          state_key: "",
          content: { algorithm: "m.megolm.v1.aes-sha2" },
        });
      if (body.historyVisibility !== undefined) {
        if (typeof body.historyVisibility !== "string" || !HISTORY.has(body.historyVisibility))
          throw badRequest("historyVisibility is not a history visibility");
        initialState.push({
          type: EventType.RoomHistoryVisibility,
          state_key: "",
          content: { history_visibility: body.historyVisibility },
        });
      }
      const { room_id } = await client.createRoom({
        name: body.name,
        ...(typeof body.theme === "string" ? { topic: body.theme } : {}),
        visibility: body.roomAccess === "public" ? ("public" as never) : ("private" as never),
        preset: (joinRule === "public" ? "public_chat" : "private_chat") as never,
        invite: invitees(body.invitedMembers),
        creation_content: { "m.federate": body.isFederated !== false },
        ...(typeof body.roomVersion === "string" ? { room_version: body.roomVersion } : {}),
        initial_state: initialState,
      });
      const invited = invitees(body.invitedMembers);
      const room = await until(() => {
        const r = membershipIs(client, room_id, "join")();
        return r && invited.every((id) => r.getMember(id)) ? r : undefined;
      }, `the new room ${room_id} with its invitees`);
      res.status(201).json(roomView(room));
    }),
  );

  router.get("/devices/:deviceId/rooms/:roomId", (req, res) => {
    const { client } = session(req);
    res.json(roomView(requireRoom(client, param(req, "roomId"))));
  });

  router.put(
    "/devices/:deviceId/rooms/:roomId",
    asyncRoute(async (req, res) => {
      const { client } = session(req);
      const room = requireRoom(client, param(req, "roomId"));
      const body = (req.body ?? {}) as RoomProps;
      const id = room.roomId;
      if (typeof body.name === "string") await client.setRoomName(id, body.name);
      if (typeof body.theme === "string") await client.setRoomTopic(id, body.theme);
      if (typeof body.joinRule === "string") {
        if (!JOIN_RULES.has(body.joinRule)) throw badRequest("joinRule is not a join rule");
        await client.sendStateEvent(id, EventType.RoomJoinRules, { join_rule: body.joinRule } as never, "");
      }
      if (typeof body.historyVisibility === "string") {
        if (!HISTORY.has(body.historyVisibility))
          throw badRequest("historyVisibility is not a history visibility");
        await client.sendStateEvent(
          id,
          EventType.RoomHistoryVisibility,
          { history_visibility: body.historyVisibility } as never,
          "",
        );
      }
      if (body.isEncrypted === true && !stateOf(room).getStateEvents(EventType.RoomEncryption, ""))
        await client.sendStateEvent(
          id,
          EventType.RoomEncryption,
          { algorithm: "m.megolm.v1.aes-sha2" } as never,
          "",
        );
      if (body.isEncrypted === false && stateOf(room).getStateEvents(EventType.RoomEncryption, ""))
        throw badRequest("encryption cannot be turned off in a room once it is on");
      if (body.roomAccess === "public" || body.roomAccess === "private")
        await client.setRoomDirectoryVisibility(id, body.roomAccess as never);
      await until(() => {
        const v = roomView(room);
        const done =
          (typeof body.name !== "string" || v.name === body.name) &&
          (typeof body.theme !== "string" || v.theme === body.theme) &&
          (typeof body.joinRule !== "string" || v.joinRule === body.joinRule) &&
          (typeof body.historyVisibility !== "string" || v.historyVisibility === body.historyVisibility);
        return done ? true : undefined;
      }, "the room update in the room state");
      res.json(roomView(room));
    }),
  );

  router.delete(
    "/devices/:deviceId/rooms/:roomId",
    asyncRoute(async (req, res) => {
      const { client } = session(req);
      await client.forget(param(req, "roomId"));
      res.status(204).end();
    }),
  );

  router.post(
    "/devices/:deviceId/rooms/:roomId/invite",
    asyncRoute(async (req, res) => {
      const { client } = session(req);
      const room = requireRoom(client, param(req, "roomId"));
      const ids = invitees(req.body);
      for (const id of ids) await client.invite(room.roomId, id);
      await until(
        () =>
          ids.every(
            (id) => room.getMember(id)?.membership === "invite" || room.getMember(id)?.membership === "join",
          )
            ? true
            : undefined,
        "the invites in the room state",
      );
      res.json(roomView(room));
    }),
  );

  router.post(
    "/devices/:deviceId/rooms/:roomId/join",
    asyncRoute(async (req, res) => {
      const { client } = session(req);
      const roomId = param(req, "roomId");
      // Joining a direct invite records the room in m.direct, as Matrix clients do, so that
      // sendMessage to the inviter finds it instead of making a second direct room.
      const inviter = client.getRoom(roomId)?.getDMInviter();
      await client.joinRoom(roomId);
      if (inviter) {
        const direct: Record<string, string[]> =
          client.getAccountData(EventType.Direct)?.getContent<Record<string, string[]>>() ?? {};
        if (!(direct[inviter] ?? []).includes(roomId)) {
          await client.setAccountData(EventType.Direct, {
            ...direct,
            [inviter]: [...(direct[inviter] ?? []), roomId],
          });
          await directRecorded(client, inviter, roomId);
        }
      }
      res.json(roomView(await until(membershipIs(client, roomId, "join"), `joining ${roomId}`)));
    }),
  );

  router.post(
    "/devices/:deviceId/rooms/:roomId/leave",
    asyncRoute(async (req, res) => {
      const { client } = session(req);
      const roomId = param(req, "roomId");
      requireRoom(client, roomId);
      await client.leave(roomId);
      res.json(roomView(await until(membershipIs(client, roomId, "leave"), `leaving ${roomId}`)));
    }),
  );

  router.get(
    "/devices/:deviceId/rooms/:roomId/state",
    asyncRoute(async (req, res) => {
      const { client } = session(req);
      const roomId = param(req, "roomId");
      const events = await client.roomState(roomId);
      res.json(
        events.map((e) => ({
          type: e.type,
          roomId,
          eventId: e.event_id,
          sender: e.sender,
          stateKey: e.state_key,
          content: JSON.stringify(e.content),
        })),
      );
    }),
  );
}
