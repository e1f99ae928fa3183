import type { RegistryAdapter } from "./types.ts";

/**
 * Spaces one registry's look-ups at least 1/perSecond apart, whoever asks (a user's request, the
 * re-verification run, SSO logins): a public government service gets at most this many requests
 * a second from this process. A waiting look-up still honours its caller's abort signal.
 */
export function limitRate(adapter: RegistryAdapter, perSecond: number): RegistryAdapter {
  const gapMs = 1000 / perSecond;
  let next = 0;
  return {
    registry: adapter.registry,
    validateNumber: (n) => adapter.validateNumber(n),
    async lookup(number, o) {
      const now = Date.now();
      const at = Math.max(now, next);
      next = at + gapMs;
      if (at > now) await wait(at - now, o?.signal);
      return adapter.lookup(number, o);
    },
  };
}

function wait(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason as Error);
      return;
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", abort);
      resolve();
    }, ms);
    const abort = (): void => {
      clearTimeout(timer);
      reject(signal?.reason as Error);
    };
    signal?.addEventListener("abort", abort, { once: true });
  });
}
