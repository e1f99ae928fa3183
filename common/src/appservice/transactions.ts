import { createHash } from "node:crypto";
import type { Express } from "express";
import type { Counter } from "prom-client";
import { bearerTokenCheck, type Authenticate } from "../http/auth.ts";
import { ApiError, asyncHandler } from "../http/errors.ts";
import type { Registration } from "./registration.ts";

export interface TransactionJournal {
  /** True the first time a transaction ID is recorded, false on a replay. Durable before it returns. */
  markProcessed(service: string, txnId: string): Promise<boolean>;
  isProcessed(service: string, txnId: string): Promise<boolean>;
}

export interface AppserviceEvent {
  type: string;
  room_id?: string;
  event_id?: string;
  sender?: string;
  state_key?: string;
}

/** The transaction's events; `transaction` is the whole body (ephemeral events, to-device messages, key counts). */
export type EventHandler = (
  events: readonly AppserviceEvent[],
  transaction: Readonly<Record<string, unknown>>,
) => Promise<void>;

/**
 * How the journal knows a transaction. Synapse on SQLite numbers transactions from 1 again after a
 * restart, so the key is the ID and what the transaction carries: its event IDs (a genuine resend
 * repeats them, though Synapse may leave out the ephemeral part), or, for a transaction of
 * ephemeral data only, that data itself — handling such a resend twice is harmless.
 */
export function transactionKey(txnId: string, body: Readonly<Record<string, unknown>>): string {
  const events = Array.isArray(body.events) ? (body.events as { event_id?: unknown }[]) : [];
  const carried = events.length > 0 ? events.map((e) => String(e.event_id)).join(",") : JSON.stringify(body);
  return `${txnId}:${createHash("sha256").update(carried).digest("base64url").slice(0, 16)}`;
}

/**
 * The homeserver's own credential towards the appservice (the registration's hs_token), compared
 * in constant time. A wrong token is 403, as the appservice API specifies.
 */
export function homeserverTokenCheck(registration: Registration): Authenticate {
  return bearerTokenCheck(registration.hs_token, "homeserver token");
}

/**
 * The homeserver → appservice API (transactions and ping). A transaction is acknowledged only
 * after its handler ran and its ID is durably journalled, so a crash before the ack makes Synapse
 * resend it, and a resend after the ack is recognised and not handled twice.
 */
export function mountAppserviceApi(
  app: Express,
  opts: {
    registration: Registration;
    journal: TransactionJournal;
    onEvents: EventHandler;
    counter: Counter<"outcome">;
    /** The transaction was answered with an error (Synapse will retry it: a sign of a recovery). */
    onFailed?: () => void;
    /** The homeserver's ping arrived, authorised (its `transaction_id`). */
    onPing?: (transactionId: string) => void;
  },
): void {
  const authorise = homeserverTokenCheck(opts.registration);

  app.put(
    "/_matrix/app/v1/transactions/:txnId",
    asyncHandler(async (req, res) => {
      await authorise(req);
      const body = req.body as { events?: unknown };
      if (!Array.isArray(body.events)) throw new ApiError("M_BAD_JSON", "Transaction has no events array");
      const txnId = transactionKey(String(req.params.txnId), body);
      if (await opts.journal.isProcessed(opts.registration.id, txnId)) {
        opts.counter.inc({ outcome: "replayed" });
        res.json({});
        return;
      }
      try {
        await opts.onEvents(body.events as AppserviceEvent[], body);
        await opts.journal.markProcessed(opts.registration.id, txnId);
      } catch (err) {
        opts.counter.inc({ outcome: "failed" });
        opts.onFailed?.();
        throw err;
      }
      opts.counter.inc({ outcome: "processed" });
      res.json({});
    }),
  );
  app.post(
    "/_matrix/app/v1/ping",
    asyncHandler(async (req, res) => {
      await authorise(req);
      const id = (req.body as { transaction_id?: unknown } | undefined)?.transaction_id;
      if (typeof id === "string") opts.onPing?.(id);
      res.json({});
    }),
  );
}
