import { describe, expect, it } from "vitest";
import { createRateLimiter } from "./rate-limit.ts";

describe("rate limiter", () => {
  it("allows a burst, then refuses with the time until the next token", () => {
    const rl = createRateLimiter({ perSecond: 2, burst: 3 });
    const t = 1_000_000;
    expect([1, 2, 3].map(() => rl.take("@a:x", t).allowed)).toEqual([true, true, true]);
    const refused = rl.take("@a:x", t);
    expect(refused).toEqual({ allowed: false, retryAfterMs: 500 });
    expect(rl.take("@b:x", t).allowed).toBe(true); // buckets are per key
    expect(rl.take("@a:x", t + 500).allowed).toBe(true);
    expect(rl.take("@a:x", t + 500).allowed).toBe(false);
  });

  it("keeps the number of buckets bounded", () => {
    const rl = createRateLimiter({ perSecond: 1, burst: 5, maxKeys: 100 });
    for (let i = 0; i < 1000; i++) rl.take(`10.0.${String(i >> 8)}.${String(i & 255)}`, 0);
    expect(rl.size).toBeLessThanOrEqual(100);
  });
});
