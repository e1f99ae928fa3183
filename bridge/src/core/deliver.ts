import { randomBytes, type KeyObject } from "node:crypto";
import type { InteropConfig } from "../interop/config.ts";
import { REQUIRED_COMPONENTS } from "../interop/server.ts";
import { contentDigest, signRequest } from "../interop/signatures.ts";
import type { BridgeStore, Completion, OutboundRow, QueueRow } from "../store/index.ts";
import type { BridgeCrypto } from "./crypto.ts";
import { vendorOfGhost } from "./ghosts.ts";
import type { MatrixSide } from "./matrix.ts";
import { Permanent } from "./queue.ts";
import type { ClearEvent, MatrixToInterop } from "./to-interop.ts";

const UNDECRYPTABLE_AFTER_MS = 120_000;

/**
 * Matrix → vendor, second half: one queued event decrypted (if its key came late), signed and
 * posted to the vendor's webhook; and what either side is told when something cannot be carried.
 */
export function deliverer(d: {
  store: BridgeStore;
  crypto: BridgeCrypto;
  matrix: MatrixSide;
  translate: MatrixToInterop;
  config: InteropConfig;
  signingKey: { keyId: string; privateKey: KeyObject };
}) {
  const { store } = d;
  const vendors = new Map(d.config.vendors.map((v) => [v.id, v]));

  const deliver = async (row: OutboundRow): Promise<Completion | undefined> => {
    const vendor = vendors.get(row.vendor);
    if (!vendor) throw new Permanent(`the vendor ${row.vendor} is no longer configured`);
    let event = row.event;
    if (!event && row.encrypted) {
      const raw = row.encrypted;
      const roomId = raw.room_id ?? "";
      const clear = await d.crypto
        .decrypt(roomId, raw, await store.portals.ghostsIn(roomId))
        .catch((err: unknown) => {
          const why = err instanceof Error ? err.message : String(err);
          // A key normally follows its message within seconds; one that does not come holds back
          // its conversation only this long.
          if (Date.now() - new Date(row.created_at).getTime() > UNDECRYPTABLE_AFTER_MS)
            throw new Permanent(`the bridge could not decrypt it (${why}); please send it again`);
          throw new Error(`waiting for the room key to decrypt it (${why})`);
        });
      const portal = await store.portals.byRoom(roomId);
      if (!portal) throw new Permanent("the room is no longer a portal");
      event = (await d.translate.toInterop(portal, { ...raw, ...clear } as ClearEvent)) ?? null;
      if (!event) return undefined;
      await store.outbound.setDecrypted(row.seq, event);
    }
    // Nothing to carry (or its content went with a redaction before it could be).
    if (!event) return undefined;
    const body = Buffer.from(JSON.stringify(event));
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "content-digest": contentDigest(body),
      "idempotency-key": row.idempotency_key,
    };
    Object.assign(
      headers,
      signRequest(
        { method: "POST", url: vendor.webhook_url, headers, body },
        {
          keyId: d.signingKey.keyId,
          privateKey: d.signingKey.privateKey,
          components: REQUIRED_COMPONENTS,
          nonce: randomBytes(16).toString("base64url"),
        },
      ),
    );
    let res: Response;
    try {
      res = await fetch(vendor.webhook_url, {
        method: "POST",
        headers,
        body,
        signal: AbortSignal.timeout(d.config.delivery.timeout_ms),
      });
    } catch (err) {
      const cause = (err as Error).cause;
      throw new Error(
        `the messenger is unreachable: ${cause instanceof Error ? cause.message : (err as Error).message}`,
        { cause: err },
      );
    }
    const text = await res.text().catch(() => "");
    if (res.ok) return undefined;
    const reason = `the messenger answered ${String(res.status)} ${text.slice(0, 300)}`;
    if (res.status === 408 || res.status === 429 || res.status >= 500) throw new Error(reason);
    throw new Permanent(reason);
  };

  /** The Matrix user hears, in the portal, that something did not reach the other messenger. */
  const notifyUndelivered = async (row: OutboundRow, reason: string) => {
    const portal = await store.portals.conversation(row.vendor, row.conversation_id);
    // A ghost of the row's vendor: this replica leads that vendor (it carried the row), so the
    // ghost's device runs here; a portal may hold ghosts of another vendor too.
    const ghosts = portal?.room_id ? await store.portals.ghostsIn(portal.room_id) : [];
    const ghost = ghosts.find((g) => vendorOfGhost(g) === row.vendor);
    if (!portal?.room_id || !ghost) return;
    await d.matrix.send(
      ghost,
      portal.room_id,
      "m.room.message",
      {
        msgtype: "m.notice",
        body: `⚠ Not delivered to ${row.vendor}: ${reason}`,
        "org.medmesh.bridge.undelivered": { idempotency_key: row.idempotency_key },
      },
      `medmesh-undelivered-${String(row.seq)}`,
    );
  };

  /** The vendor hears that an event it sent could not be carried into Matrix, and why. */
  const tellVendor = async (row: QueueRow, reason: string) => {
    const key = await store.requests.keyOfEvent(row.vendor, Number(row.seq));
    await store.outbound.enqueue(
      { vendor: row.vendor, conversation_id: row.conversation_id },
      `undelivered-${String(row.seq)}`,
      {
        event: {
          type: "undelivered",
          conversation_id: row.conversation_id,
          event_seq: Number(row.seq),
          idempotency_key: key ?? "unknown",
          reason: reason.slice(0, 2000),
        },
      },
    );
  };

  return { deliver, notifyUndelivered, tellVendor };
}
