/** What the kit's parts share: a received request, a failed check, the check runner's shape. */

/** One request the vendor made to the kit. */
export interface Received {
  method: string;
  url: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer;
  at: number;
  status: number;
}

/** How far a signature's `created` may be from the kit's clock (as MedMesh allows). */
export const MAX_SKEW_SECONDS = 300;

export class CheckFailed extends Error {}

/** Runs one check, records and reports its result; true when it passed. */
export type Check = (name: string, fn: () => string | Promise<string>) => Promise<boolean>;

/** Polls `fn` every 50 ms until it returns a value or `ms` passed. */
export async function waitFor<T>(fn: () => T | undefined, ms: number): Promise<T | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v !== undefined || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}
