import type { Knex } from "knex";
import type { Logger } from "pino";
import type { StoreConfig } from "./config.ts";
import { createKnex, releaseDataDir } from "./knex.ts";
import { APPSERVICE_FRAME_MIGRATIONS } from "../appservice/schema.ts";
import { migrate, type Migration } from "./migrations.ts";

export interface LeaseStore {
  /** Leader lock for scheduled jobs across instances: true if `holder` now holds `name` until now + ttl. */
  tryAcquire(name: string, holder: string, ttlMs: number, now?: Date): Promise<boolean>;
  release(name: string, holder: string): Promise<void>;
}

export interface TransactionStore {
  markProcessed(service: string, txnId: string, now?: Date): Promise<boolean>;
  isProcessed(service: string, txnId: string): Promise<boolean>;
}

/** Small named documents a service must keep across restarts (e.g. the last good trust list). */
export interface DocumentStore {
  get(name: string): Promise<string | undefined>;
  put(name: string, value: string, now?: Date): Promise<void>;
}

export interface Store {
  /** For capability stores (identity, audit, …) whose tables are part of the same migration history. */
  readonly knex: Knex;
  readonly leases: LeaseStore;
  readonly transactions: TransactionStore;
  readonly documents: DocumentStore;
  health(): Promise<void>;
  close(): Promise<void>;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "leases",
    up: (trx) =>
      trx.schema.createTable("leases", (t) => {
        t.text("name").primary();
        t.text("holder").notNullable();
        t.timestamp("expires_at", { useTz: true }).notNullable();
      }),
  },
  {
    version: 2,
    name: "appservice transactions",
    up: (trx) =>
      trx.schema.createTable("appservice_transactions", (t) => {
        t.text("service").notNullable();
        t.text("txn_id").notNullable();
        t.timestamp("processed_at", { useTz: true }).notNullable();
        t.primary(["service", "txn_id"]);
      }),
  },
  {
    version: 3,
    name: "documents",
    up: (trx) =>
      trx.schema.createTable("documents", (t) => {
        t.text("name").primary();
        t.text("value").notNullable();
        t.timestamp("updated_at", { useTz: true }).notNullable();
      }),
  },
  {
    version: 4,
    name: "clinician verifications",
    up: (trx) =>
      trx.schema.createTable("clinician_verifications", (t) => {
        t.text("user_id").primary();
        t.text("registry").notNullable();
        // Kept so that re-verification works; never logged, never in attestations or audit.
        t.text("registration_number").notNullable();
        t.text("claimed_name").notNullable();
        t.text("registered_name");
        t.text("profession");
        t.jsonb("specialisms").notNullable().defaultTo("[]");
        t.text("status").notNullable(); // pending | verified | rejected | revoked
        t.text("reason");
        t.timestamp("verified_at", { useTz: true });
        t.timestamp("expires_at", { useTz: true });
        t.timestamp("last_checked_at", { useTz: true });
        t.integer("attempts").notNullable().defaultTo(0);
        t.timestamp("updated_at", { useTz: true }).notNullable();
        t.index(["status", "last_checked_at"]);
      }),
  },
  {
    version: 5,
    name: "audit log",
    up: (trx) =>
      trx.schema.createTable("audit_log", (t) => {
        t.bigIncrements("seq").primary();
        t.timestamp("at", { useTz: true }).notNullable();
        t.text("actor").notNullable();
        t.text("on_behalf_of");
        t.text("action").notNullable();
        t.text("object").notNullable();
        t.text("outcome").notNullable();
        t.jsonb("details").notNullable().defaultTo("{}");
        // Hash chain: each entry's hash covers the previous one, so an edited or deleted entry shows.
        t.text("prev_hash").notNullable();
        t.text("hash").notNullable();
      }),
  },
  {
    version: 6,
    name: "identity documents",
    up: (trx) =>
      trx.schema.createTable("identity_documents", (t) => {
        // One document per user, held only until the admin decides (then deleted).
        t.text("user_id").primary();
        t.text("content_type").notNullable();
        t.binary("data").notNullable();
        t.timestamp("uploaded_at", { useTz: true }).notNullable();
      }),
  },
  {
    version: 7,
    name: "retention index",
    up: async (trx) => {
      // Metadata of message-like events, never content: what the retention sweep needs.
      await trx.schema.createTable("retention_events", (t) => {
        t.text("event_id").primary();
        t.text("room_id").notNullable();
        t.text("sender").notNullable();
        t.text("type").notNullable();
        t.bigInteger("origin_ts").notNullable();
        t.specificType("media", "text[]").notNullable().defaultTo("{}");
        // Journal: set before the redaction is sent, so a crashed sweep knows what may be in flight.
        t.timestamp("redacting_at", { useTz: true });
        t.timestamp("redacted_at", { useTz: true });
      });
      // The sweep's question ("what expired and is not yet redacted?") reads only this index.
      await trx.raw(
        "CREATE INDEX retention_events_due ON retention_events (origin_ts) WHERE redacted_at IS NULL",
      );
      await trx.raw("CREATE INDEX retention_events_room ON retention_events (room_id, origin_ts)");
      await trx.schema.createTable("retention_keeps", (t) => {
        t.text("event_id").notNullable();
        t.text("room_id").notNullable();
        t.text("kept_by").notNullable();
        t.timestamp("kept_at", { useTz: true }).notNullable();
        t.primary(["room_id", "event_id"]);
      });
      await trx.schema.createTable("retention_rooms", (t) => {
        t.text("room_id").primary();
        // The room's own period where its admins chose a shorter one; null: the organisation's.
        t.bigInteger("period_ms");
        // Rooms that existed before MedMesh: indexed once through the admin API.
        t.timestamp("backfilled_at", { useTz: true });
      });
    },
  },
  {
    version: 8,
    name: "bridge interop requests",
    up: async (trx) => {
      // One row per (vendor, idempotency key): the request's hash and the answer it got, so a
      // retry gets the same answer and a different request under the same key is a conflict.
      await trx.schema.createTable("interop_requests", (t) => {
        t.text("vendor").notNullable();
        t.text("idempotency_key").notNullable();
        t.text("request_hash").notNullable();
        t.integer("status").notNullable();
        t.jsonb("response").notNullable();
        t.timestamp("received_at", { useTz: true }).notNullable();
        t.primary(["vendor", "idempotency_key"]);
      });
      // Signature nonces seen within the clock-skew window: a replayed request is refused.
      await trx.schema.createTable("interop_nonces", (t) => {
        t.text("vendor").notNullable();
        t.text("nonce").notNullable();
        t.timestamp("expires_at", { useTz: true }).notNullable();
        t.primary(["vendor", "nonce"]);
      });
      await trx.schema.createTable("interop_conversations", (t) => {
        t.text("vendor").notNullable();
        t.text("conversation_id").notNullable();
        t.text("kind").notNullable();
        t.timestamp("created_at", { useTz: true }).notNullable();
        t.primary(["vendor", "conversation_id"]);
      });
      // Accepted vendor events, in order, for the bridge core to carry into Matrix.
      await trx.schema.createTable("interop_inbound", (t) => {
        t.bigIncrements("seq");
        t.text("vendor").notNullable();
        t.text("conversation_id").notNullable();
        t.jsonb("event").notNullable();
        t.timestamp("received_at", { useTz: true }).notNullable();
        t.timestamp("delivered_at", { useTz: true });
      });
    },
  },
  {
    version: 9,
    name: "bridge core: portals, ghosts, message map, delivery queues, room keys",
    up: async (trx) => {
      // A conversation's Matrix room (the portal), once it has one.
      await trx.schema.alterTable("interop_conversations", (t) => {
        t.text("room_id").unique();
        t.text("name");
      });
      // Vendor → Matrix: each accepted event is carried once, in order; failures are kept with why.
      await trx.schema.alterTable("interop_inbound", (t) => {
        t.text("state").notNullable().defaultTo("pending"); // pending | done | failed
        t.integer("attempts").notNullable().defaultTo(0);
        t.timestamp("next_attempt_at", { useTz: true });
        t.text("error");
        t.index(["state", "seq"]);
      });
      await trx.schema.createTable("bridge_ghosts", (t) => {
        t.text("user_id").primary();
        t.text("vendor").notNullable();
        t.text("remote_id").notNullable();
        t.text("display_name");
        t.jsonb("registration");
        t.text("device_id"); // the device of the current crypto session, replaced at each start
        t.unique(["vendor", "remote_id"]);
      });
      // Which ghosts are in which portal rooms (the devices that can decrypt there).
      await trx.schema.createTable("bridge_members", (t) => {
        t.text("room_id").notNullable();
        t.text("user_id").notNullable();
        t.primary(["room_id", "user_id"]);
      });
      // Message IDs on both sides, for replies, edits, deletions, reactions and receipts.
      await trx.schema.createTable("bridge_messages", (t) => {
        t.text("conversation_id").notNullable();
        t.text("message_id").notNullable();
        t.text("room_id").notNullable();
        t.text("event_id").notNullable();
        t.primary(["conversation_id", "message_id"]);
        t.index(["event_id"]);
      });
      // Matrix → vendor: the persistent delivery queue (one row per Matrix event, so a
      // re-delivered appservice transaction adds nothing).
      await trx.schema.createTable("bridge_outbound", (t) => {
        t.bigIncrements("seq");
        t.text("vendor").notNullable();
        t.text("conversation_id").notNullable();
        t.text("idempotency_key").notNullable().unique();
        t.jsonb("event"); // null while the Matrix event is still encrypted
        t.jsonb("encrypted"); // the raw m.room.encrypted event until it is decrypted
        t.text("state").notNullable().defaultTo("pending"); // pending | delivered | dead
        t.integer("attempts").notNullable().defaultTo(0);
        t.timestamp("next_attempt_at", { useTz: true }).notNullable();
        t.text("last_error");
        t.timestamp("created_at", { useTz: true }).notNullable();
        t.timestamp("delivered_at", { useTz: true });
        t.index(["state", "conversation_id", "seq"]);
      });
      // Files vendors upload, until they are sent into Matrix (plain or encrypted).
      await trx.schema.createTable("bridge_media", (t) => {
        t.text("media_id").primary();
        t.text("vendor");
        t.text("content_type").notNullable();
        t.binary("data");
        t.text("mxc");
        t.jsonb("file"); // the encrypted-attachment object when the mxc holds ciphertext
        t.timestamp("created_at", { useTz: true }).notNullable();
      });
      // Megolm sessions the bridge's devices received, so a restart (new devices) can still
      // decrypt what was sent before it.
      await trx.schema.createTable("bridge_room_keys", (t) => {
        t.text("session_id").primary();
        t.text("room_id").notNullable().index();
        t.jsonb("exported").notNullable();
      });
    },
  },
  {
    version: 10,
    name: "bridge devices keep their crypto state",
    up: async (trx) => {
      // The snapshot of a ghost device's crypto store (Olm account, sessions, megolm keys).
      await trx.schema.alterTable("bridge_ghosts", (t) => {
        t.binary("crypto_store");
        t.text("sync_token"); // where its to-device /sync goes on
      });
      await trx.schema.dropTable("bridge_room_keys");
    },
  },
  {
    version: 11,
    name: "bridged users' registrations and avatars; last event per conversation",
    up: async (trx) => {
      await trx.schema.alterTable("bridge_ghosts", (t) => {
        t.boolean("verification_due").notNullable().defaultTo(false); // a registration not yet submitted
        t.text("verification"); // the identity module's last answer (status, or why it refused)
        t.text("avatar_source"); // the vendor's avatar_url the ghost's avatar was taken from
      });
      // The last event recorded per conversation (the bridge's catch-up on late transactions).
      await trx.schema.alterTable("bridge_outbound", (t) => {
        t.index(["vendor", "conversation_id", "seq"]);
      });
    },
  },
  {
    version: 12,
    name: "conversations by ID alone",
    // Every interop request looks its conversation up by ID, whichever vendor owns it (a vendor
    // writing to another's conversation is refused): without this, a scan of all conversations.
    up: (trx) =>
      trx.schema.alterTable("interop_conversations", (t) => {
        t.index(["conversation_id"]);
      }),
  },
  {
    version: 13,
    name: "retention: media that room state refers to; rooms homed elsewhere",
    up: async (trx) => {
      // Avatars and other media named in room state (m.room.member avatar_url, m.room.avatar, …):
      // never retention's to delete, even when an expired message refers to the same file.
      await trx.schema.createTable("retention_state_media", (t) => {
        t.text("mxc").primary();
        t.text("room_id").notNullable();
        t.text("type").notNullable();
        t.timestamp("seen_at", { useTz: true }).notNullable();
      });
      // Rooms another organisation's MedMesh administers: this one only forgets its own copy,
      // reading their history through the admin API from where it last stopped.
      await trx.schema.alterTable("retention_rooms", (t) => {
        t.timestamp("foreign_since", { useTz: true });
        t.text("foreign_from");
      });
    },
  },
  ...APPSERVICE_FRAME_MIGRATIONS,
];

export class KnexStore implements Store {
  readonly knex: Knex;
  private readonly onClose: (() => void) | undefined;
  constructor(knex: Knex, onClose?: () => void) {
    this.knex = knex;
    this.onClose = onClose;
  }

  readonly leases: LeaseStore = {
    tryAcquire: async (name, holder, ttlMs, now = new Date()) => {
      const expires = new Date(now.getTime() + ttlMs);
      // One statement: insert, or take over when expired or already ours. Postgres row locking on
      // the conflicting row makes concurrent callers serialise, so exactly one wins.
      const rows = await this.knex.raw<{ rows: { holder: string }[] }>(
        `INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
         ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
         WHERE leases.holder = EXCLUDED.holder OR leases.expires_at <= ?
         RETURNING holder`,
        [name, holder, expires, now],
      );
      return rows.rows.length === 1;
    },
    release: async (name, holder) => {
      await this.knex("leases").where({ name, holder }).delete();
    },
  };

  readonly transactions: TransactionStore = {
    markProcessed: async (service, txnId, now = new Date()) => {
      const rows = await this.knex("appservice_transactions")
        .insert({ service, txn_id: txnId, processed_at: now })
        .onConflict(["service", "txn_id"])
        .ignore()
        .returning("txn_id");
      return rows.length === 1;
    },
    isProcessed: async (service, txnId) => {
      const row: unknown = await this.knex("appservice_transactions")
        .where({ service, txn_id: txnId })
        .first();
      return row !== undefined;
    },
  };

  readonly documents: DocumentStore = {
    get: async (name) => {
      const row: { value: string } | undefined = await this.knex("documents").where({ name }).first("value");
      return row?.value;
    },
    put: async (name, value, now = new Date()) => {
      await this.knex("documents")
        .insert({ name, value, updated_at: now })
        .onConflict("name")
        .merge(["value", "updated_at"]);
    },
  };

  async health(): Promise<void> {
    await this.knex.raw("SELECT 1");
  }

  async close(): Promise<void> {
    await this.knex.destroy();
    this.onClose?.();
  }
}

export async function createStore(config: StoreConfig, log?: Logger): Promise<KnexStore> {
  const knex = await createKnex(config);
  // A closed embedded store hands its folder back at once (another process may open it).
  const release =
    config.type === "pglite"
      ? () => {
          releaseDataDir(config.data_dir);
        }
      : undefined;
  try {
    await migrate(knex, MIGRATIONS, log);
  } catch (err) {
    await knex.destroy();
    release?.();
    throw err;
  }
  return new KnexStore(knex, release);
}
