import type { Knex } from "knex";
import { ghostStore } from "./ghosts.ts";
import { inboundQueue } from "./inbound-queue.ts";
import { interopRequests } from "./interop-requests.ts";
import { mediaStore } from "./media.ts";
import { messageMap } from "./messages.ts";
import { outboundQueue } from "./outbound-queue.ts";
import { portalStore } from "./portals.ts";
import { queueSamples } from "./queue-samples.ts";

export { BRIDGE_MIGRATIONS } from "./migrations.ts";
export type { Db } from "./db.ts";
export type { Portal, PortalStore } from "./portals.ts";
export type { MessageMap } from "./messages.ts";
export type { OutboundRow, OutboundQueue } from "./outbound-queue.ts";
export type { InboundRow, InboundQueue } from "./inbound-queue.ts";
export type { MediaRow, MediaStore } from "./media.ts";
export type { InteropRequests } from "./interop-requests.ts";
export type { GhostStore, DueGhost } from "./ghosts.ts";
export type { QueueRow, QueueTable, Completion, VendorCounts } from "./queue-table.ts";
export type { QueueSample, QueueSamples } from "./queue-samples.ts";

/**
 * The bridge's repository layer: every query the bridge makes on its tables (BRIDGE_MIGRATIONS)
 * is a typed method here, one module per table family.
 */
export function createBridgeStore(knex: Knex) {
  return {
    portals: portalStore(knex),
    messages: messageMap(knex),
    outbound: outboundQueue(knex),
    inbound: inboundQueue(knex),
    media: mediaStore(knex),
    requests: interopRequests(knex),
    ghosts: ghostStore(knex),
    queueSamples: queueSamples(knex),
    /** One transaction over several repositories (their methods take it as `db`). */
    transaction: <T>(fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> => knex.transaction(fn),
  };
}
export type BridgeStore = ReturnType<typeof createBridgeStore>;
