/**
 * Token buckets per key (a user, or the client address when unauthenticated): `perSecond`
 * refill, up to `burst`. Idle buckets are dropped so a scan over many addresses cannot grow
 * memory without bound.
 */
export function createRateLimiter(opts: { perSecond: number; burst: number; maxKeys?: number }): {
  /** Takes one token; answers how long to wait (ms) when there is none. */
  take(key: string, now?: number): { allowed: true } | { allowed: false; retryAfterMs: number };
  readonly size: number;
} {
  const buckets = new Map<string, { tokens: number; at: number }>();
  const maxKeys = opts.maxKeys ?? 100_000;
  const sweep = (now: number): void => {
    for (const [k, b] of buckets) {
      if (b.tokens + ((now - b.at) / 1000) * opts.perSecond >= opts.burst) buckets.delete(k);
    }
    // Still full: the oldest buckets go first (Map keeps insertion order).
    for (const k of buckets.keys()) {
      if (buckets.size < maxKeys) break;
      buckets.delete(k);
    }
  };
  return {
    take(key, now = Date.now()) {
      let b = buckets.get(key);
      if (!b) {
        if (buckets.size >= maxKeys) sweep(now);
        b = { tokens: opts.burst, at: now };
        buckets.set(key, b);
      } else {
        b.tokens = Math.min(opts.burst, b.tokens + ((now - b.at) / 1000) * opts.perSecond);
        b.at = now;
      }
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return { allowed: true };
      }
      return { allowed: false, retryAfterMs: Math.ceil(((1 - b.tokens) / opts.perSecond) * 1000) };
    },
    get size() {
      return buckets.size;
    },
  };
}
