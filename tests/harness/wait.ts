import {
  ClientEvent,
  MatrixEventEvent,
  RoomEvent,
  type MatrixClient,
  type MatrixEvent,
  type Room,
} from "matrix-js-sdk";

export interface WaitOptions {
  timeoutMs?: number;
  /** What is being waited for, for the timeout message ("Bob sees Alice's hello"). */
  description?: string;
}

/**
 * Resolves with the first event in `roomId` (already in the timeline or arriving later) for which
 * `predicate` holds. Encrypted events are offered to the predicate again once decrypted. The
 * timeout error says what was awaited and lists the events that were seen instead.
 */
export function waitForRoomEvent(
  client: MatrixClient,
  roomId: string,
  predicate: (event: MatrixEvent) => boolean,
  opts: WaitOptions = {},
): Promise<MatrixEvent> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const description = opts.description ?? "a matching event";
  const seen = new Set<MatrixEvent>();
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      clearTimeout(timer);
      client.off(RoomEvent.Timeline, onTimeline);
      client.off(MatrixEventEvent.Decrypted, onDecrypted);
    };
    const consider = (event: MatrixEvent): void => {
      if (event.getRoomId() !== roomId) return;
      seen.add(event);
      if (event.isBeingDecrypted()) return; // re-offered by the Decrypted listener
      if (predicate(event)) {
        cleanup();
        resolve(event);
      }
    };
    const onTimeline = (event: MatrixEvent, room: Room | undefined): void => {
      if (room?.roomId === roomId) consider(event);
    };
    const onDecrypted = (event: MatrixEvent): void => {
      consider(event);
    };
    const timer = setTimeout(() => {
      cleanup();
      const summary = [...seen]
        .slice(-15)
        .map(
          (e) =>
            `  ${e.getType()} from ${e.getSender() ?? "?"}${e.isDecryptionFailure() ? " (decryption failed)" : ""}` +
            (typeof e.getContent().body === "string" ? `: ${String(e.getContent().body).slice(0, 100)}` : ""),
        )
        .join("\n");
      reject(
        new Error(
          `Timed out after ${String(timeoutMs)} ms waiting for ${description} in ${roomId} as ${client.getUserId() ?? "?"}.\n` +
            `Events seen in that room (${String(seen.size)}):\n${summary || "  (none)"}`,
        ),
      );
    }, timeoutMs);
    client.on(RoomEvent.Timeline, onTimeline);
    client.on(MatrixEventEvent.Decrypted, onDecrypted);
    for (const event of client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? []) consider(event);
  });
}

/** Waits until `client` has the room in the given membership (e.g. an invite arrived over federation). */
export function waitForMembership(
  client: MatrixClient,
  roomId: string,
  membership: "invite" | "join",
  opts: WaitOptions = {},
): Promise<Room> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const room = client.getRoom(roomId);
      if (room?.getMyMembership() === membership) {
        cleanup();
        resolve(room);
        return true;
      }
      return false;
    };
    const onMembership = (): void => {
      check();
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      client.off(RoomEvent.MyMembership, onMembership);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new Error(
          `Timed out after ${String(timeoutMs)} ms waiting for ${client.getUserId() ?? "?"} to have membership ` +
            `'${membership}' in ${roomId}${opts.description ? ` (${opts.description})` : ""}; it has ` +
            `'${client.getRoom(roomId)?.getMyMembership() ?? "no room"}'`,
        ),
      );
    }, timeoutMs);
    client.on(RoomEvent.MyMembership, onMembership);
    check();
  });
}

/** Polls `check` until it returns something truthy, and returns that; the timeout error says what was awaited. */
export async function waitUntil<T>(
  check: () => T | Promise<T>,
  what: string,
  timeoutMs = 30_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await check();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting until ${what}`);
}

/** The ID of the next room `client` learns of (an invite, typically); listen before causing it. */
export function nextRoom(client: MatrixClient): Promise<string> {
  return new Promise((resolve) => {
    const onRoom = (room: Room): void => {
      client.off(ClientEvent.Room, onRoom);
      resolve(room.roomId);
    };
    client.on(ClientEvent.Room, onRoom);
  });
}
