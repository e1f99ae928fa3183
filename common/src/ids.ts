/**
 * Branded Matrix identifiers. Parse once at the edge (config, HTTP input, events) and pass the
 * branded type inward, so a room ID can never be handed where a user ID is expected.
 */
declare const brand: unique symbol;
type Brand<T, B extends string> = T & { readonly [brand]: B };

export type ServerName = Brand<string, "ServerName">;
export type UserId = Brand<string, "UserId">;
export type RoomId = Brand<string, "RoomId">;
export type EventId = Brand<string, "EventId">;

// Server name grammar from the Matrix spec appendix: hostname | IPv4 | [IPv6], optional :port.
const SERVER_NAME = /^(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,255})(?::\d{1,5})?$/;
const LOCALPART = /^[a-z0-9._=\-/+]+$/;

export class InvalidIdError extends Error {
  override name = "InvalidIdError";
}

function serverPart(id: string, sigil: string, kind: string): string {
  if (!id.startsWith(sigil))
    throw new InvalidIdError(`${kind} must start with '${sigil}': ${JSON.stringify(id)}`);
  const colon = id.indexOf(":");
  if (colon < 2) throw new InvalidIdError(`${kind} has no server name: ${JSON.stringify(id)}`);
  return id.slice(colon + 1);
}

export function parseServerName(value: string): ServerName {
  const port = /:(\d+)$/.exec(value)?.[1];
  if (!SERVER_NAME.test(value) || (port !== undefined && Number(port) > 65535)) {
    throw new InvalidIdError(`not a valid Matrix server name: ${JSON.stringify(value)}`);
  }
  return value as ServerName;
}

export function parseUserId(value: string): UserId {
  const server = serverPart(value, "@", "user ID");
  const localpart = value.slice(1, value.indexOf(":"));
  if (!LOCALPART.test(localpart))
    throw new InvalidIdError(`user ID has an invalid localpart: ${JSON.stringify(value)}`);
  parseServerName(server);
  if (value.length > 255) throw new InvalidIdError("user ID is longer than 255 characters");
  return value as UserId;
}

export function parseRoomId(value: string): RoomId {
  parseServerName(serverPart(value, "!", "room ID"));
  return value as RoomId;
}

export function parseEventId(value: string): EventId {
  // Room versions >= 3 use server-less event IDs ($base64), older ones $local:server.
  if (!/^\$[A-Za-z0-9+/_\-=:.]+$/.test(value))
    throw new InvalidIdError(`not a valid event ID: ${JSON.stringify(value)}`);
  return value as EventId;
}

export function userIdFor(localpart: string, server: ServerName): UserId {
  return parseUserId(`@${localpart}:${server}`);
}

export function serverNameOf(id: UserId | RoomId): ServerName {
  return id.slice(id.indexOf(":") + 1) as ServerName;
}
