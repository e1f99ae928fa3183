import type { Logger } from "pino";
import {
  backoffMs,
  describeAnswer,
  isTransient,
  networkReason,
  Pacer,
  signedHeaders,
  type Signer,
} from "./signing.ts";
import { nowIso, type VendorStore } from "./store.ts";

export interface OutboxItem {
  /** Items of one queue (a conversation) are delivered one after the other, in order. */
  queue: string;
  method: "POST" | "PUT";
  url: string;
  idempotencyKey: string;
  contentType: string;
  body: Buffer;
  /** What it is, for logs and `GET /api/outbox/items` (never message content). */
  description: string;
  /** An earlier item this one needs (a file upload before its message): failed with it. */
  dependsOn?: number;
  /** Epoch ms after which it is failed instead of retried (undefined: retried until delivered). */
  giveUpAt?: number;
}

interface OutboxRow {
  seq: number;
  queue: string;
  method: string;
  url: string;
  idempotency_key: string;
  content_type: string;
  body: Uint8Array;
  description: string;
  depends_on: number | null;
  attempts: number;
  next_attempt_at: number;
  give_up_at: number | null;
}

const REQUEST_TIMEOUT_MS = 10_000;

/**
 * Requests to MedMesh, persisted before the API call that caused them answers. One worker sends
 * them: per queue strictly in order (the head of a queue blocks the rest of it), across queues by
 * due time. Network errors, 408, 429 and 5xx are retried with exponential backoff (200 ms, doubling,
 * at most 10 s) under the same Idempotency-Key, each attempt signed anew; any other 4xx fails the
 * item (logged with MedMesh's words) and the queue moves on.
 */
export class Outbox {
  private readonly pacer = new Pacer();
  private readonly abort = new AbortController();
  private stopped = false;
  private running: Promise<void> | undefined;

  private readonly store: VendorStore;
  private readonly signer: Signer;
  private readonly log: Logger;

  constructor(store: VendorStore, signer: Signer, log: Logger) {
    this.store = store;
    this.signer = signer;
    this.log = log;
  }

  /** Adds an item (inside the caller's transaction); returns its sequence number. */
  enqueue(item: OutboxItem): number {
    const { lastInsertRowid } = this.store.run(
      `INSERT INTO outbox (queue, method, url, idempotency_key, content_type, body, description, depends_on,
         next_attempt_at, give_up_at, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      item.queue,
      item.method,
      item.url,
      item.idempotencyKey,
      item.contentType,
      item.body,
      item.description,
      item.dependsOn ?? null,
      Date.now(),
      item.giveUpAt ?? null,
      nowIso(),
    );
    // The worker runs on a later tick, after the caller's transaction has committed.
    this.pacer.wake();
    return lastInsertRowid;
  }

  counts(): { pending: number; delivered: number; failed: number } {
    const counts = { pending: 0, delivered: 0, failed: 0 };
    for (const r of this.store.all("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status"))
      counts[r.status as keyof typeof counts] = Number(r.n);
    return counts;
  }

  items(status?: string): Record<string, unknown>[] {
    return this.store.all(
      `SELECT seq, queue, method, url, idempotency_key, description, status, attempts, last_status, last_error,
         created_at, finished_at
       FROM outbox WHERE ?1 IS NULL OR status = ?1 ORDER BY seq`,
      status ?? null,
    );
  }

  start(): void {
    this.running ??= this.loop().catch((err: unknown) => {
      this.log.error({ err }, "the outbox worker stopped on an unexpected error");
    });
  }

  /** Stops the worker; a request in flight is abandoned and stays pending (sent again on start). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort(new Error("the vendor is stopping"));
    this.pacer.wake();
    await this.running;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const now = Date.now();
      this.store.run(
        `UPDATE outbox SET status = 'failed', finished_at = ?,
           last_error = 'gave up: ' || COALESCE(last_error, 'never delivered')
         WHERE status = 'pending' AND give_up_at IS NOT NULL AND give_up_at < ?`,
        nowIso(),
        now,
      );
      // The head of each queue (its oldest pending item); the one due first.
      const head = this.store.get(
        `SELECT o.seq, o.queue, o.method, o.url, o.idempotency_key, o.content_type, o.body, o.description,
           o.depends_on, o.attempts, o.next_attempt_at, o.give_up_at
         FROM outbox o
         WHERE o.status = 'pending'
           AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.status = 'pending' AND p.queue = o.queue AND p.seq < o.seq)
         ORDER BY o.next_attempt_at, o.seq LIMIT 1`,
      ) as OutboxRow | undefined;
      if (!head) {
        await this.pacer.sleep(60_000);
        continue;
      }
      if (head.next_attempt_at > now) {
        await this.pacer.sleep(head.next_attempt_at - now);
        continue;
      }
      if (head.depends_on !== null) {
        const dep = this.store.get(
          "SELECT status, description, last_error FROM outbox WHERE seq = ?",
          head.depends_on,
        );
        if (dep?.status === "failed") {
          this.fail(head, undefined, `${String(dep.description)} failed: ${String(dep.last_error)}`);
          continue;
        }
      }
      await this.attempt(head);
    }
  }

  private async attempt(item: OutboxRow): Promise<void> {
    const body = Buffer.from(item.body);
    const headers = signedHeaders(this.signer, item.method, item.url, {
      bytes: body,
      contentType: item.content_type,
      idempotencyKey: item.idempotency_key,
    });
    let status: number;
    let text: string;
    try {
      const res = await fetch(item.url, {
        method: item.method,
        headers,
        body,
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]),
      });
      status = res.status;
      text = await res.text();
    } catch (err) {
      if (this.stopped) return; // abandoned: still pending, sent again after a restart
      this.retry(item, undefined, `MedMesh is unreachable: ${networkReason(err)}`);
      return;
    }
    if (status >= 200 && status < 300) {
      this.store.run(
        `UPDATE outbox SET status = 'delivered', attempts = attempts + 1, last_status = ?, last_error = NULL,
           response = ?, finished_at = ? WHERE seq = ?`,
        status,
        text.slice(0, 1000),
        nowIso(),
        item.seq,
      );
      this.log.debug(
        { seq: item.seq, item: item.description, attempts: item.attempts + 1 },
        "delivered to MedMesh",
      );
    } else if (isTransient(status)) {
      this.retry(item, status, `MedMesh answered ${describeAnswer(status, text)}`);
    } else {
      this.fail(item, status, `MedMesh refused it: ${describeAnswer(status, text)}`);
    }
  }

  private retry(item: OutboxRow, status: number | undefined, reason: string): void {
    const attempts = item.attempts + 1;
    const delay = backoffMs(attempts);
    this.store.run(
      "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_status = ?, last_error = ? WHERE seq = ?",
      attempts,
      Date.now() + delay,
      status ?? null,
      reason,
      item.seq,
    );
    this.log.info(
      { seq: item.seq, item: item.description, attempts, retry_in_ms: delay, reason },
      "delivery to MedMesh failed; retrying with the same Idempotency-Key",
    );
  }

  private fail(item: OutboxRow, status: number | undefined, reason: string): void {
    this.store.run(
      `UPDATE outbox SET status = 'failed', attempts = attempts + ?, last_status = ?, last_error = ?, finished_at = ?
       WHERE seq = ?`,
      status === undefined ? 0 : 1,
      status ?? null,
      reason,
      nowIso(),
      item.seq,
    );
    this.log.warn(
      { seq: item.seq, item: item.description, idempotency_key: item.idempotency_key, error: reason },
      "not delivered to MedMesh",
    );
  }
}

interface DownloadRow {
  media_id: string;
  content_type: string;
  size: number;
  attempts: number;
  next_attempt_at: number;
}

/**
 * Files MedMesh users sent: a received `message` with `file` leaves a pending row in `files`; this
 * worker fetches the bytes with a signed GET from MedMesh's media endpoint, retrying network errors,
 * 408, 429 and 5xx like the outbox does.
 */
export class Downloads {
  private readonly pacer = new Pacer();
  private readonly abort = new AbortController();
  private stopped = false;
  private running: Promise<void> | undefined;

  private readonly store: VendorStore;
  private readonly signer: Signer;
  private readonly mediaUrl: (mediaId: string) => string;
  private readonly log: Logger;

  constructor(store: VendorStore, signer: Signer, mediaUrl: (mediaId: string) => string, log: Logger) {
    this.store = store;
    this.signer = signer;
    this.mediaUrl = mediaUrl;
    this.log = log;
  }

  wake(): void {
    this.pacer.wake();
  }

  start(): void {
    this.running ??= this.loop().catch((err: unknown) => {
      this.log.error({ err }, "the download worker stopped on an unexpected error");
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort(new Error("the vendor is stopping"));
    this.pacer.wake();
    await this.running;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      const now = Date.now();
      const next = this.store.get(
        `SELECT media_id, content_type, size, attempts, next_attempt_at FROM files
         WHERE status = 'pending' ORDER BY next_attempt_at LIMIT 1`,
      ) as DownloadRow | undefined;
      if (!next) {
        await this.pacer.sleep(60_000);
        continue;
      }
      if (next.next_attempt_at > now) {
        await this.pacer.sleep(next.next_attempt_at - now);
        continue;
      }
      await this.download(next);
    }
  }

  private async download(file: DownloadRow): Promise<void> {
    const url = this.mediaUrl(file.media_id);
    let status: number;
    let data: Buffer | undefined;
    let text = "";
    try {
      const res = await fetch(url, {
        headers: signedHeaders(this.signer, "GET", url),
        signal: AbortSignal.any([this.abort.signal, AbortSignal.timeout(60_000)]),
      });
      status = res.status;
      if (res.ok) data = Buffer.from(await res.arrayBuffer());
      else text = await res.text();
    } catch (err) {
      if (this.stopped) return;
      this.retry(file, `MedMesh is unreachable: ${networkReason(err)}`);
      return;
    }
    if (data) {
      this.store.run(
        "UPDATE files SET status = 'stored', data = ?, size = ?, attempts = attempts + 1, last_error = NULL WHERE media_id = ?",
        data,
        data.length,
        file.media_id,
      );
      this.log.info({ media_id: file.media_id, bytes: data.length }, "file downloaded from MedMesh");
    } else if (isTransient(status)) {
      this.retry(file, `MedMesh answered ${describeAnswer(status, text)}`);
    } else {
      const reason = `MedMesh refused the download: ${describeAnswer(status, text)}`;
      this.store.run(
        "UPDATE files SET status = 'failed', attempts = attempts + 1, last_error = ? WHERE media_id = ?",
        reason,
        file.media_id,
      );
      this.log.warn({ media_id: file.media_id, error: reason }, "file not downloaded");
    }
  }

  private retry(file: DownloadRow, reason: string): void {
    const attempts = file.attempts + 1;
    const delay = backoffMs(attempts);
    this.store.run(
      "UPDATE files SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE media_id = ?",
      attempts,
      Date.now() + delay,
      reason,
      file.media_id,
    );
    this.log.info(
      { media_id: file.media_id, attempts, retry_in_ms: delay, reason },
      "file download failed; retrying",
    );
  }
}
