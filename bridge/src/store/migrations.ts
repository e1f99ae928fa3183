import type { Migration } from "@medmesh/common";

/**
 * The bridge's tables: the interop API's records (idempotency, nonces, conversations, accepted
 * vendor events) and the core's (ghosts, portal members, the message map, the delivery queue,
 * files). Steps 8–12 are as they were released; later ones follow the global numbering
 * (common/src/store/migrations.ts).
 */
export const BRIDGE_MIGRATIONS: readonly Migration[] = [
  {
    version: 8,
    capability: "bridge",
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
    capability: "bridge",
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
    capability: "bridge",
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
    capability: "bridge",
    name: "bridged users' registrations and avatars; last event per conversation",
    up: async (trx) => {
      await trx.schema.alterTable("bridge_ghosts", (t) => {
        t.boolean("verification_due").notNullable().defaultTo(false); // a registration not yet submitted
        t.text("verification"); // the identity module's last answer (status, or why it refused)
        t.text("avatar_source"); // the vendor's avatar_url the ghost's avatar was taken from
      });
      // The last event recorded per conversation (read by the bridge's catch-up until the appservice
      // frame took it over with its own room positions; the index stays for per-conversation reads).
      await trx.schema.alterTable("bridge_outbound", (t) => {
        t.index(["vendor", "conversation_id", "seq"]);
      });
    },
  },
  {
    version: 12,
    capability: "bridge",
    name: "conversations by ID alone",
    // Every interop request looks its conversation up by ID, whichever vendor owns it (a vendor
    // writing to another's conversation is refused): without this, a scan of all conversations.
    up: (trx) =>
      trx.schema.alterTable("interop_conversations", (t) => {
        t.index(["conversation_id"]);
      }),
  },
  {
    version: 14,
    capability: "bridge",
    name: "bridge: content only while delivery needs it; records with a bounded life",
    up: async (trx) => {
      // A carried event keeps its row (order, idempotency) but not its content; rows carried
      // before this step lose theirs now.
      await trx.raw("ALTER TABLE interop_inbound ALTER COLUMN event DROP NOT NULL");
      await trx.raw("UPDATE interop_inbound SET event = NULL, error = NULL WHERE state = 'done'");
      await trx.raw(
        "UPDATE bridge_outbound SET event = NULL, encrypted = NULL, last_error = NULL WHERE state = 'delivered'",
      );
      // A vendor's file keeps its bytes until they are in Matrix; a retried upload is recognised
      // by its hash. The event that carries a file takes it along when it is redacted.
      await trx.schema.alterTable("bridge_media", (t) => {
        t.text("sha256");
        t.bigInteger("size");
        t.text("event_id");
        t.index(["event_id"]);
        t.index(["created_at"]);
      });
      await trx.raw(
        "UPDATE bridge_media SET sha256 = encode(sha256(data), 'hex'), size = length(data) WHERE data IS NOT NULL",
      );
      // The prune's questions, each answered from an index.
      await trx.raw(
        "CREATE INDEX bridge_outbound_settled ON bridge_outbound (created_at) WHERE state <> 'pending'",
      );
      await trx.raw(
        "CREATE INDEX interop_inbound_settled ON interop_inbound (received_at) WHERE state <> 'pending'",
      );
      await trx.schema.alterTable("interop_requests", (t) => {
        t.index(["received_at"]);
      });
      await trx.schema.alterTable("interop_nonces", (t) => {
        t.index(["expires_at"]);
      });
      // An undeliverable vendor event is told to the vendor with its request's Idempotency-Key.
      await trx.raw(
        "CREATE INDEX interop_requests_event_seq ON interop_requests (vendor, ((response->>'event_seq')::bigint))",
      );
    },
  },
  {
    version: 34,
    capability: "bridge",
    name: "bridge: queue depth samples for the console's chart",
    // One row per minute and direction; any replica may write it (the key keeps one), and the
    // bridge deletes rows older than a day. Counts only: no vendor, conversation or content.
    up: (trx) =>
      trx.schema.createTable("bridge_queue_samples", (t) => {
        t.timestamp("at", { useTz: true }).notNullable();
        t.text("direction").notNullable();
        t.integer("pending").notNullable();
        t.integer("failed").notNullable();
        t.primary(["at", "direction"]);
      }),
  },
];
