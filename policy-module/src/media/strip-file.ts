import { createReadStream } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
import { Readable } from "node:stream";
import { setImmediate as nextTurn } from "node:timers/promises";
import { walkerFor } from "./strip-metadata.ts";
import { InvalidImage, type Part, type Plan, type Walk } from "./walk.ts";

export type FileStripResult =
  /** The stripped image, `length` bytes, streamed from the original file by `open()`. */
  | { kind: "stripped"; length: number; removed: string[]; open(): Readable }
  | { kind: "unsupported" }
  | { kind: "invalid"; reason: string };

/** Bytes read from the file at a time; the walk's small reads are answered from this window. */
const WINDOW = 64 * 1024;
/** Walk steps answered from memory before other requests get a turn of the event loop. */
const STEPS_PER_TURN = 4096;

/**
 * Strips metadata from the image in `path` (`size` bytes) like `stripImageMetadata`, but reads
 * the file block by block and streams the result from it: memory stays at a window and the plan,
 * whatever the size. The file must stay in place until the stream has been read.
 */
export async function stripImageFile(
  path: string,
  size: number,
  contentType: string,
): Promise<FileStripResult> {
  const walker = walkerFor(contentType);
  if (walker === undefined) return { kind: "unsupported" };
  const handle = await open(path, "r");
  let plan: Plan;
  try {
    plan = await runOnFile(walker(size), handle, size);
  } catch (err) {
    if (err instanceof InvalidImage) return { kind: "invalid", reason: err.message };
    throw err;
  } finally {
    await handle.close();
  }
  return {
    kind: "stripped",
    length: plan.length,
    removed: plan.removed,
    open: () => Readable.from(emit(path, plan.parts), { objectMode: false }),
  };
}

async function runOnFile<T>(walk: Walk<T>, handle: FileHandle, size: number): Promise<T> {
  let window = Buffer.alloc(0);
  let windowPos = 0;
  let steps = 0;
  let step = walk.next();
  while (!step.done) {
    const { pos, length } = step.value;
    const end = Math.max(pos, Math.min(pos + length, size));
    if (pos < windowPos || end > windowPos + window.length) {
      // A fresh buffer each time: the walk may still hold (and use) the previous one.
      window = Buffer.alloc(Math.max(0, Math.min(Math.max(length, WINDOW), size - pos)));
      windowPos = pos;
      await readFully(handle, window, pos);
    } else if (++steps % STEPS_PER_TURN === 0) {
      await nextTurn(); // a file of many small pieces must not hold up every other request
    }
    step = walk.next(window.subarray(pos - windowPos, end - windowPos));
  }
  return step.value;
}

async function readFully(handle: FileHandle, into: Buffer, pos: number): Promise<void> {
  for (let done = 0; done < into.length;) {
    const { bytesRead } = await handle.read(into, done, into.length - done, pos + done);
    if (bytesRead === 0) throw new Error("the file is shorter than it was");
    done += bytesRead;
  }
}

async function* emit(path: string, parts: Part[]): AsyncGenerator<Buffer> {
  for (const part of parts) {
    if (Buffer.isBuffer(part)) {
      yield part;
      continue;
    }
    for await (const chunk of createReadStream(path, { start: part.start, end: part.end - 1 })) {
      yield chunk as Buffer;
    }
  }
}
