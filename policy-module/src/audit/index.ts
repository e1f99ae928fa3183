export { createAuditLog, type AuditEntry, type AuditLog, type AuditRecord } from "./audit-log.ts";
