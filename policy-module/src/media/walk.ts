/**
 * The walking machinery the metadata strippers share: a walk asks for bytes, a driver (a Buffer
 * in memory, or a file read block by block) answers, and the walk returns the output's plan.
 */

/** Up to `length` bytes from `pos`; fewer (or none) only where the file ends. */
export interface ReadRequest {
  pos: number;
  length: number;
}

/** A walk over a file of known size: yields what it must read, is resumed with those bytes. */
export type Walk<T> = Generator<ReadRequest, T, Buffer>;

/** The output, in order: ranges of the original (`end` exclusive) and bytes that replace some. */
export type Part = { start: number; end: number } | Buffer;

export interface Plan {
  parts: Part[];
  length: number;
  removed: string[];
}

/** Thrown while walking a file; turned into an "invalid" result at the top. */
export class InvalidImage extends Error {}

// A file cut into more pieces than this is refused: every real image has a few dozen segments,
// and a plan of millions of tiny ranges would cost more memory than the file.
const MAX_PARTS = 65_536;

/** Collects the byte ranges that are kept (adjacent ones merged) and the kinds dropped. */
export class Rewriter {
  readonly parts: Part[] = [];
  readonly removed = new Set<string>();
  length = 0;

  keep(start: number, end: number): void {
    if (end <= start) return;
    const last = this.parts.at(-1);
    if (last !== undefined && !Buffer.isBuffer(last) && last.end === start) last.end = end;
    else this.push({ start, end });
    this.length += end - start;
  }

  /** Bytes that replace the original's (a rewritten header). */
  write(bytes: Buffer): void {
    this.push(bytes);
    this.length += bytes.length;
  }

  drop(kind: string): void {
    this.removed.add(kind);
  }

  plan(): Plan {
    return { parts: this.parts, length: this.length, removed: [...this.removed] };
  }

  private push(part: Part): void {
    if (this.parts.length >= MAX_PARTS) throw new InvalidImage("the file is cut into too many pieces");
    this.parts.push(part);
  }
}

/** Bytes at `pos`: exactly `length` of them, or fewer where the file ends. */
export function* read(pos: number, length: number): Walk<Buffer> {
  return yield { pos, length };
}

export function* byteAt(pos: number): Walk<number | undefined> {
  return (yield* read(pos, 1))[0];
}

/** Entropy-coded data and chunk bodies are read in blocks of this size. */
export const BLOCK = 64 * 1024;
