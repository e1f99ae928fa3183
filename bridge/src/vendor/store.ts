import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { DatabaseSync, type SQLInputValue } from "node:sqlite";

/**
 * The reference vendor's own store: one SQLite file (WAL, synchronous=FULL), so that everything —
 * what it received, what it still has to send, which nonces and idempotency keys it has seen —
 * survives a kill -9 and a restart on the same file. Every change a request makes happens in one
 * transaction (`tx`), before the answer.
 */

const SCHEMA_VERSION = 1;

const SCHEMA = `
CREATE TABLE users (
  id TEXT PRIMARY KEY,
  display_name TEXT NOT NULL,
  registry TEXT,
  registration_number TEXT,
  origin TEXT NOT NULL CHECK (origin IN ('local', 'medmesh')),
  created_at TEXT NOT NULL
);
CREATE TABLE conversations (
  id TEXT PRIMARY KEY,
  kind TEXT NOT NULL CHECK (kind IN ('direct', 'group')),
  name TEXT,
  creator TEXT NOT NULL,
  origin TEXT NOT NULL CHECK (origin IN ('local', 'medmesh')),
  created_at TEXT NOT NULL
);
CREATE TABLE members (
  conversation_id TEXT NOT NULL REFERENCES conversations (id),
  user_id TEXT NOT NULL,
  membership TEXT NOT NULL CHECK (membership IN ('invite', 'join', 'leave')),
  PRIMARY KEY (conversation_id, user_id)
);
-- Every event of a conversation, sent ('out') or received ('in'), in the order it happened here.
CREATE TABLE events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  conversation_id TEXT NOT NULL,
  direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
  type TEXT NOT NULL,
  event TEXT NOT NULL,
  idempotency_key TEXT,
  at TEXT NOT NULL
);
CREATE INDEX events_by_conversation ON events (conversation_id, seq);
CREATE INDEX events_by_key ON events (idempotency_key);
-- The current state of each message (edits and deletions applied).
CREATE TABLE messages (
  conversation_id TEXT NOT NULL REFERENCES conversations (id),
  message_id TEXT NOT NULL,
  direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
  sender TEXT NOT NULL,
  text TEXT NOT NULL,
  html TEXT,
  reply_to TEXT,
  media_id TEXT,
  edited INTEGER NOT NULL DEFAULT 0,
  deleted INTEGER NOT NULL DEFAULT 0,
  event_seq INTEGER NOT NULL,
  PRIMARY KEY (conversation_id, message_id)
);
CREATE TABLE reactions (
  conversation_id TEXT NOT NULL REFERENCES conversations (id),
  reaction_id TEXT NOT NULL,
  message_id TEXT NOT NULL,
  sender TEXT NOT NULL,
  key TEXT NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (conversation_id, reaction_id)
);
-- Files both ways: sent ones keep their bytes; received ones are downloaded from MedMesh.
CREATE TABLE files (
  media_id TEXT PRIMARY KEY,
  conversation_id TEXT NOT NULL,
  direction TEXT NOT NULL CHECK (direction IN ('in', 'out')),
  name TEXT NOT NULL,
  content_type TEXT NOT NULL,
  size INTEGER NOT NULL,
  data BLOB,
  status TEXT NOT NULL CHECK (status IN ('pending', 'stored', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  last_error TEXT,
  created_at TEXT NOT NULL
);
CREATE INDEX files_pending ON files (status, next_attempt_at);
-- Webhook requests applied, by Idempotency-Key (a retry with the same body is answered again).
CREATE TABLE idempotency_keys (
  idempotency_key TEXT PRIMARY KEY,
  request_hash TEXT NOT NULL,
  status INTEGER NOT NULL,
  response TEXT NOT NULL,
  first_seen_at TEXT NOT NULL
);
-- Signature nonces seen on the webhook, kept until their signature could no longer be fresh.
CREATE TABLE nonces (
  key_id TEXT NOT NULL,
  nonce TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (key_id, nonce)
);
CREATE INDEX nonces_by_expiry ON nonces (expires_at);
-- Requests to MedMesh, delivered in order per queue (a conversation), retried with the same key.
CREATE TABLE outbox (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  queue TEXT NOT NULL,
  method TEXT NOT NULL CHECK (method IN ('POST', 'PUT')),
  url TEXT NOT NULL,
  idempotency_key TEXT NOT NULL,
  content_type TEXT NOT NULL,
  body BLOB NOT NULL,
  description TEXT NOT NULL,
  depends_on INTEGER REFERENCES outbox (seq),
  status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  give_up_at INTEGER,
  last_status INTEGER,
  last_error TEXT,
  response TEXT,
  created_at TEXT NOT NULL,
  finished_at TEXT
);
CREATE INDEX outbox_by_queue ON outbox (status, queue, seq);
`;

export type Row = Record<string, unknown>;

export class VendorStore {
  readonly db: DatabaseSync;
  private depth = 0;

  constructor(file: string) {
    const path = resolve(file);
    mkdirSync(dirname(path), { recursive: true });
    this.db = new DatabaseSync(path);
    this.db.exec("PRAGMA journal_mode = WAL");
    this.db.exec("PRAGMA synchronous = FULL");
    this.db.exec("PRAGMA foreign_keys = ON");
    this.db.exec("PRAGMA busy_timeout = 5000");
    const version = Number(this.get("PRAGMA user_version")?.user_version ?? 0);
    if (version > SCHEMA_VERSION)
      throw new Error(
        `${path} was written by a newer reference vendor (schema ${String(version)}, this one knows ${String(SCHEMA_VERSION)})`,
      );
    if (version < SCHEMA_VERSION)
      this.tx(() => {
        this.db.exec(SCHEMA);
        this.db.exec(`PRAGMA user_version = ${String(SCHEMA_VERSION)}`);
      });
  }

  get(sql: string, ...params: SQLInputValue[]): Row | undefined {
    return this.db.prepare(sql).get(...params);
  }

  all(sql: string, ...params: SQLInputValue[]): Row[] {
    return this.db.prepare(sql).all(...params);
  }

  run(sql: string, ...params: SQLInputValue[]): { changes: number; lastInsertRowid: number } {
    const r = this.db.prepare(sql).run(...params);
    return { changes: Number(r.changes), lastInsertRowid: Number(r.lastInsertRowid) };
  }

  /** Runs `fn` in one transaction (nested calls join the outer one); a throw rolls it all back. */
  tx<T>(fn: () => T): T {
    if (this.depth > 0) return fn();
    this.db.exec("BEGIN IMMEDIATE");
    this.depth++;
    try {
      const result = fn();
      this.db.exec("COMMIT");
      return result;
    } catch (err) {
      this.db.exec("ROLLBACK");
      throw err;
    } finally {
      this.depth--;
    }
  }

  close(): void {
    if (this.db.isOpen) this.db.close();
  }
}

export const nowIso = (): string => new Date().toISOString();

/** A column's value as text (SQLite gives strings, numbers, bigints, bytes or null). */
export const text = (v: unknown): string =>
  typeof v === "string" ? v : typeof v === "number" || typeof v === "bigint" ? String(v) : "";
