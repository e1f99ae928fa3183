export { AuditConfigSchema, type AuditConfig } from "./config.ts";
export { createAuditService, type AuditService } from "./service.ts";
export { mountAuditApi } from "./routes.ts";
export { runAuditCli } from "./cli.ts";
