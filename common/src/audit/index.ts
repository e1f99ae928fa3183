export {
  auditRecordHash,
  createAuditLog,
  GENESIS,
  type AnchorPoint,
  type AuditBreak,
  type AuditBreakKind,
  type AuditEntry,
  type AuditLog,
  type AuditRecord,
  type AuditReport,
  type VerifyOptions,
} from "./audit-log.ts";
export {
  anchorSignatureValid,
  fileAnchorStore,
  signAnchor,
  verifyAnchored,
  type AnchoredReport,
  type AnchorStore,
  type AuditAnchor,
  type SignedAnchor,
  type SigningKey,
} from "./anchor.ts";
export { createAnchorer, type Anchorer, type AnchorResult } from "./anchorer.ts";
