import type { KeyObject } from "node:crypto";
import type { AuditLog } from "@medmesh/common";
import type { Logger } from "pino";
import type { Registry } from "prom-client";
import type { InteropConfig } from "../interop/config.ts";
import type { RedactionPurge } from "../lifecycle/index.ts";
import type { BridgeStore } from "../store/index.ts";
import type { BridgeCrypto } from "./crypto.ts";
import { deliverer } from "./deliver.ts";
import type { Ghosts } from "./ghosts.ts";
import type { MatrixSide } from "./matrix.ts";
import { recorder } from "./record.ts";
import { matrixToInterop } from "./to-interop.ts";

export type { OutboundRow } from "../store/index.ts";

export interface OutboundDeps {
  store: BridgeStore;
  ghosts: Ghosts;
  crypto: BridgeCrypto;
  matrix: MatrixSide;
  redactions: RedactionPurge;
  log: Logger;
  config: InteropConfig;
  signingKey: { keyId: string; privateKey: KeyObject };
  botUserId: string;
  audit: AuditLog;
  metrics: Registry;
}

/**
 * Matrix → vendor: `record` (record.ts) turns each transaction event in a portal into an interop
 * event (to-interop.ts) and stores it in the delivery queue before the transaction is
 * acknowledged; `deliver` (deliver.ts) signs and posts one queued event to the vendor's webhook.
 */
export function outbound(d: OutboundDeps) {
  const translate = matrixToInterop(d);
  const { record } = recorder({ ...d, translate });
  const { deliver, notifyUndelivered, tellVendor } = deliverer({ ...d, translate });
  return { record, deliver, notifyUndelivered, tellVendor };
}
