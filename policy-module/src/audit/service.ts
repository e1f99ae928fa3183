import {
  createAnchorer,
  createAuditLog,
  fileAnchorStore,
  verifyAnchored,
  type AnchoredReport,
  type Anchorer,
  type AnchorResult,
  type Store,
} from "@medmesh/common";
import type { Logger } from "pino";
import type { OrgKey } from "../trust/index.ts";
import type { AuditConfig } from "./config.ts";

export interface AuditService {
  verify(opts?: { pageSize?: number }): Promise<AnchoredReport>;
  /** Signs the head now; undefined when anchoring is not configured. */
  anchorNow(): Promise<AnchorResult | undefined>;
  start(): void;
  stop(): Promise<void>;
}

/** Verification and anchoring of the store's audit log, as the service and the CLI both run them. */
export function createAuditService(
  config: AuditConfig,
  d: { store: Store; orgKey: OrgKey | undefined; serverName: string; log: Logger },
): AuditService {
  const audit = createAuditLog(d.store.knex);
  const anchors = config.anchor_file ? fileAnchorStore(config.anchor_file) : undefined;
  const anchorer: Anchorer | undefined =
    anchors && d.orgKey
      ? createAnchorer({ audit, anchors, key: d.orgKey, serverName: d.serverName, log: d.log })
      : undefined;
  return {
    verify: async (opts = {}) => {
      if (!anchors || !d.orgKey) return { ...(await audit.verify(opts)), anchor: null };
      return verifyAnchored(audit, anchors, { kid: d.orgKey.kid, key: d.orgKey.privateKey }, opts);
    },
    anchorNow: async () => anchorer?.anchorNow(),
    start: () => {
      if (anchorer) anchorer.start(config.anchor_interval_seconds * 1000);
      else d.log.warn("audit.anchor_file is not set: deleting the newest audit records would go unnoticed");
    },
    stop: async () => {
      await anchorer?.stop();
    },
  };
}
