/**
 * The hash-chained audit log and its signed anchors in the store (docs/security.md).
 * A core opened with `openCore` holds one as `core.audit`.
 *
 * @packageDocumentation
 */
export {
  AuditLog,
  CANONICAL_PREFIX,
  GENESIS_HASH,
  chainHead,
  hashEvent,
  listEvents,
  verifyChain,
  type AuditEventInput,
  type ChainAnchor,
  type EventFilter,
  type EventRow,
  type VerifyResult,
} from '../lib/audit/log.js'
export { AUDIT_KINDS, isAuditKind, type AuditKind } from '../lib/audit/kinds.js'
export { verifyAuditTrail, type AuditTrailReport } from '../lib/audit/verify-trail.js'
export {
  scanAnchors,
  startAnchorTimer,
  writeAnchor,
  type AnchorRecord,
  type AnchorScan,
} from '../lib/audit/anchor.js'
export type { AnchorAlarmOptions, SkippedAnchorFile } from '../lib/audit/anchor.js'
export type { LegacyDisagreement } from '../lib/audit/verify-trail.js'
