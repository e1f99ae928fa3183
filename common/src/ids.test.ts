import { describe, expect, it } from "vitest";
import {
  InvalidIdError,
  parseEventId,
  parseRoomId,
  parseServerName,
  parseUserId,
  serverNameOf,
} from "./ids.ts";

describe("Matrix identifiers", () => {
  it("accepts valid IDs and extracts the server name", () => {
    const user = parseUserId("@dr.jansen:hospital-a.example:8448");
    expect(serverNameOf(user)).toBe("hospital-a.example:8448");
    expect(serverNameOf(parseRoomId("!abc:localhost:8448"))).toBe("localhost:8448");
    expect(parseServerName("[::1]:8448")).toBe("[::1]:8448");
    expect(parseEventId("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg")).toBeTypeOf("string");
  });

  it.each([
    ["user without sigil", () => parseUserId("alice:localhost")],
    ["user with upper-case localpart", () => parseUserId("@Alice:localhost")],
    ["user without server", () => parseUserId("@alice")],
    ["room with user sigil", () => parseRoomId("@abc:localhost")],
    ["server with bad port", () => parseServerName("localhost:99999")],
    ["server with space", () => parseServerName("local host")],
    ["event without sigil", () => parseEventId("abc")],
  ])("rejects %s", (_name, parse) => {
    expect(parse).toThrow(InvalidIdError);
  });
});
