import { describe, expect, it } from "vitest";
import { defaultHolder } from "./replicas.ts";

describe("a replica's default lease holder", () => {
  it("is its internal URL, and differs between hosts with the same config", () => {
    const loopback = { host: "127.0.0.1", port: 8010 };
    expect(defaultHolder(loopback, "ward-1")).toBe("http://127.0.0.1:8010#ward-1");
    expect(defaultHolder(loopback, "ward-2")).not.toBe(defaultHolder(loopback, "ward-1"));
    expect(new URL("/_medmesh/replica/v1/calls/x", defaultHolder(loopback, "ward-1")).href).toBe(
      "http://127.0.0.1:8010/_medmesh/replica/v1/calls/x",
    );
    expect(defaultHolder({ host: "0.0.0.0", port: 8010 }, "ward-1")).toBe("http://ward-1:8010");
    expect(defaultHolder({ host: "::1", port: 8010 }, "ward-1")).toBe("http://[::1]:8010#ward-1");
    expect(defaultHolder({ host: "127.0.0.1", port: 0 }, "ward-1")).toBeUndefined();
  });
});
