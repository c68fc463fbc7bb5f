/** The audit trail (docs/audit.md). */
export { AuditLog, auditRecord, fileSink, openAuditLog, shortVersion, stderrSink, AUDIT_TAG, type AuditEvent, type AuditEventName, type AuditSink, type AuditTrigger } from "./audit-log.ts";
