import { readFile, stat } from "node:fs/promises";
import { normaliseExtractNumber } from "../extract/extract.ts";
import { readCappedText } from "../http.ts";
import { RegistryUnavailableError, type RegistryAdapter, type UnavailableKind } from "../types.ts";
import { McsdFeedError, parseMcsdFeed, type McsdFeed } from "./feed.ts";

export interface McsdRegistryOptions {
  /** The registry name clinicians give ("BIG", "NL-AGB", …). */
  registry: string;
  /** identifier.system of the register's numbers. */
  system: string;
  source: { file: string } | { url: string };
  /** A URL feed is fetched again at the first look-up after this long. */
  refreshMs: number;
  /** After a failed fetch, the next look-up tries again after this long. */
  retryMs?: number;
  timeoutMs: number;
  maxBytes: number;
  log: { warn(obj: object, msg: string): void };
}

const DEFAULT_RETRY_MS = 30_000;

/**
 * A registry answered from an mCSD feed held in memory. The feed is read at start and again when
 * it is due (a file when it changed, a URL every refreshMs, at the next look-up: an idle service
 * does not poll). Whatever goes wrong with the latest read — no answer, too large, not a Bundle —
 * makes checks against it pending with the reason until a good read; the older copy is not used,
 * since it may still list someone the new one struck off. Nothing here throws past a look-up.
 */
export function createMcsdRegistry(o: McsdRegistryOptions): RegistryAdapter {
  const where = "file" in o.source ? o.source.file : new URL(o.source.url).origin;
  let feed: McsdFeed | undefined;
  let failure: { kind: UnavailableKind; message: string } | undefined;
  let version: string | undefined; // a file's mtime and size
  let readAt = 0;
  let reading: Promise<void> | undefined;

  const fail = (kind: UnavailableKind, message: string): void => {
    failure = { kind, message: `mCSD feed ${where}: ${message}` };
    feed = undefined;
    o.log.warn({ registry: o.registry, kind }, `the mCSD feed cannot be used: ${failure.message}`);
  };
  const parse = (text: string): void => {
    try {
      feed = parseMcsdFeed(text, o.system, o.registry);
      failure = undefined;
    } catch (err) {
      if (!(err instanceof McsdFeedError)) throw err;
      fail("malformed", err.message);
    }
  };

  const readFileSource = async (file: string): Promise<void> => {
    let s: { mtimeMs: number; size: number };
    try {
      s = await stat(file);
    } catch {
      fail("fault", "the file cannot be read");
      version = undefined;
      return;
    }
    const current = `${String(s.mtimeMs)}:${String(s.size)}`;
    if (current === version) return;
    version = current;
    if (s.size > o.maxBytes) {
      fail("malformed", `larger than ${String(o.maxBytes)} bytes (max_answer_bytes)`);
      return;
    }
    try {
      parse(await readFile(file, "utf8"));
    } catch {
      fail("fault", "the file cannot be read");
    }
  };

  const readUrlSource = async (url: string): Promise<void> => {
    const due = failure ? (o.retryMs ?? DEFAULT_RETRY_MS) : o.refreshMs;
    if (readAt !== 0 && Date.now() - readAt < due) return;
    readAt = Date.now();
    const timeout = AbortSignal.timeout(o.timeoutMs);
    try {
      const res = await fetch(url, { headers: { accept: "application/fhir+json" }, signal: timeout });
      if (res.status !== 200) {
        await res.body?.cancel().catch(() => undefined);
        fail("http", `answered HTTP ${String(res.status)}`);
        return;
      }
      parse(await readCappedText(res, o.maxBytes, `mCSD feed ${where}`));
    } catch (err) {
      if (err instanceof RegistryUnavailableError) {
        fail(err.kind, err.message);
        return;
      }
      fail(
        timeout.aborted ? "timeout" : "fault",
        timeout.aborted ? `no answer within ${String(o.timeoutMs)} ms` : "could not be reached",
      );
    }
  };

  const refresh = (): Promise<void> =>
    (reading ??= ("file" in o.source ? readFileSource(o.source.file) : readUrlSource(o.source.url)).finally(
      () => {
        reading = undefined;
      },
    ));
  // Read at start, so the first check does not wait for the whole feed.
  void refresh();

  return {
    registry: o.registry,
    validateNumber: normaliseExtractNumber,
    async lookup(number) {
      await refresh();
      if (failure)
        throw new RegistryUnavailableError(failure.kind, `${failure.message}; the check stays pending`);
      const n = normaliseExtractNumber(number);
      if (!n.ok || !feed) return undefined;
      if (feed.ambiguous.has(n.normalised))
        throw new RegistryUnavailableError(
          "malformed",
          `mCSD feed ${where} lists this number more than once`,
        );
      return feed.records.get(n.normalised);
    },
  };
}
