import { describe, expect, it } from "vitest";
import { isAmbiguousPath } from "./router.ts";

describe("isAmbiguousPath", () => {
  it("refuses what Synapse could read differently from the proxy", () => {
    for (const path of [
      "/_matrix/client/v3/rooms/%2F%2F/join",
      "/_matrix/client/v3/rooms/!a%2F..%2Fb/state",
      "/_matrix/client/v3/rooms/!a/../b",
      "/_matrix/client/v3//sync",
      "/_matrix/client/v3/rooms/%2e%2e/join",
      "/_matrix/client/v3/rooms/a%5cb/join",
      "/_matrix/client/v3/rooms/a%00/join",
      "/_matrix/client/v3/rooms/%E0%A4%A/join",
      // An encoded slash is a device ID's only where the whole path is one of those endpoints.
      "/_matrix/client/v3/devices/ab%2Fcd/extra",
      "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/ab%2Fcd/events/x",
      "/_matrix/client/v3/rooms/ab%2Fcd/devices/x",
    ])
      expect(isAmbiguousPath(path), path).toBe(true);
  });

  it("lets a dehydrated device's base64 ID, slash included, through its endpoints (MSC3814)", () => {
    for (const path of [
      "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device/WAswghqLcuxw%2FZqTgipmsJiIFzs/events",
      "/_matrix/client/v3/devices/WAswghqLcuxw%2FZqTgipmsJiIFzs",
      "/_matrix/client/r0/devices/a%2Fb",
      "/_matrix/client/v3/rooms/!abc:example.org/send/m.room.message/txn1",
    ])
      expect(isAmbiguousPath(path), path).toBe(false);
  });
});
