import { createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { bodyTimedOut, Refusal, tooLarge } from "./context.ts";
import { declaredLength, watchBodyIdle } from "./limits.ts";

export interface Spooled {
  path: string;
  size: number;
}

/**
 * Writes a request body to a temporary file, for a rule that must walk a body too large to hold
 * in memory (an image upload). Refused like an in-memory body: a declared length over `limit` at
 * once, a streamed one as it crosses `limit` (413), a stall after `idleMs` (408). The file is in
 * a private folder (0700) that `onDone` deletes when the request is over, whatever its outcome.
 */
export async function spoolBody(
  req: IncomingMessage,
  limit: number,
  idleMs: number,
  onDone: (cleanup: () => Promise<void>) => void,
): Promise<Spooled> {
  if (declaredLength(req) > limit) throw tooLarge(limit);
  const dir = await mkdtemp(join(tmpdir(), "medmesh-upload-"));
  onDone(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, "body");
  const file = createWriteStream(path, { flags: "wx", mode: 0o600 });
  const size = await new Promise<number>((resolve, reject) => {
    let received = 0;
    const fail = (err: Error): void => {
      stopIdle();
      req.off("data", onData);
      req.pause(); // the refusal closes the connection; the rest is never read
      file.destroy();
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received > limit) fail(tooLarge(limit));
      else if (!file.write(chunk)) req.pause(); // the disk is slower: not the client's stall
    };
    file.on("drain", () => req.resume());
    file.once("error", fail);
    req.on("data", onData);
    const stopIdle = watchBodyIdle(req, idleMs, () => {
      fail(bodyTimedOut());
    });
    req.once("end", () => {
      file.end(() => {
        resolve(received);
      });
    });
    req.once("error", fail);
    req.once("close", () => {
      if (!req.complete) fail(new Refusal(400, "M_UNKNOWN", "The request body was cut short"));
    });
  });
  return { path, size };
}
