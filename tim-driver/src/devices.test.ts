import { createLogger } from "@medmesh/common";
import { describe, expect, it } from "vitest";
import { DevicePool } from "./devices.ts";
import { DriverError, NotLoggedIn } from "./errors.ts";

const accounts = [1, 2, 3].map((i) => ({
  username: `u${String(i)}`,
  password: "p",
  displayName: `U ${String(i)}`,
}));

function pool() {
  let now = 1_000_000;
  const p = new DevicePool(accounts, "http://127.0.0.1:1", createLogger("test", "silent"), {
    now: () => now,
  });
  return { p, now: () => now, advance: (s: number) => (now += s * 1000) };
}

const status = (fn: () => unknown): number | undefined => {
  try {
    fn();
    return undefined;
  } catch (err) {
    return err instanceof DriverError ? err.status : err instanceof NotLoggedIn ? 401 : -1;
  }
};

describe("device pool claims", () => {
  it("refuses use without a claim, and a claim by someone else", () => {
    const { p } = pool();
    expect(status(() => p.use("1"))).toBe(403);
    expect(status(() => p.get("4"))).toBe(404);
    expect(status(() => p.get("x"))).toBe(404);
    p.claim(p.get("1"), "suite", 60);
    expect(status(() => p.claim(p.get("1"), "other", 60))).toBe(400);
    expect(p.claim(p.get("1"), "suite", 120).deviceStatus).toBe("claimed");
    expect(status(() => p.use("1").requireSession())).toBe(401);
  });

  it("renews the lease on every call and frees the device when it runs out", () => {
    const { p, now, advance } = pool();
    p.claim(p.get("2"), "suite", 60);
    advance(50);
    p.use("2");
    advance(50);
    // 100 s after the claim of 60 s, alive thanks to the call at 50 s.
    expect(p.get("2").info(now()).deviceStatus).toBe("claimed");
    expect(status(() => p.use("2"))).toBeUndefined();
    advance(61);
    expect(status(() => p.use("2"))).toBe(403);
    const info = p.get("2").info(now());
    expect(info.deviceStatus).toBe("free");
    expect(info.claimerName).toBe("");
  });

  it("unclaims only a claimed device", () => {
    const { p } = pool();
    expect(status(() => p.unclaim(p.get("3")))).toBe(400);
    p.claim(p.get("3"), "suite", 60);
    expect(p.unclaim(p.get("3")).deviceStatus).toBe("free");
  });
});
