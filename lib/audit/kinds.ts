// Every kind of row the audit log holds, in one place: what it records and who writes it.
// appendEvent refuses any other kind, and docs/security.md ("What is audited and what is
// counted") lists each of them (test/lib/audit/kinds.test.ts keeps the two in step).
// A new kind is a line here, a row there, and the code that writes it.
/** Every audit kind, with what it records and who writes it; appendEvent refuses any other. */
export const AUDIT_KINDS = {
  'pop.request':
    'A POP API request, allowed or refused with its reason (server/pop-api.ts, lib/auth)',
  'pop.refusals':
    'A summary per source address, reason and interval of POP API refusals before any credential (lib/auth/refusal-guard.ts)',
  'pop.token': 'POP access tokens: refresh-token reuse and chain revocation (lib/auth/tokens.ts)',
  'pop.rsync':
    'An rsync session of a POP (files, bytes, feed page), a failed rsync login, a summary of refused addresses (lib/core-sync/rsync-audit.ts)',
  'sync.alarm':
    "A POP's alarm: a tree change it did not make, a bad blob that stopped a pull, its meta.db lost (lib/pop-sync, lib/pop.ts)",
  'sync.repair': 'A POP repaired a missing or damaged blob from the core (lib/pop-sync/repair.ts)',
  'credential.register': 'A device credential (WL3 version) registered (lib/credentials)',
  'credential.auth': 'A credentials API request whose vault API key was refused (lib/credentials)',
  'vault.create': 'A vault created (lib/credentials/vaults.ts)',
  'vault.subscription': "A vault's subscription set or cleared (lib/credentials/vaults.ts)",
  'vault.key.create': 'A vault API key issued (lib/credentials/vaults.ts)',
  'vault.key.revoke': 'A vault API key revoked (lib/credentials/vaults.ts)',
  'admin.auth':
    'Admin authentication: WebAuthn enrollment and login, allowed or refused (lib/admin)',
  'admin.action': 'An admin action (web UI or CLI), done or refused (lib/admin, the CLI)',
  webhook: 'A Paddle webhook delivery: applied, stale, duplicate, parked or failed (lib/billing)',
  'billing.duplicate':
    'More than one Paddle object for one billing row: the unused extras archived, or an alarm when a person is needed (a second transaction, an object in use) (lib/billing/duplicates.ts)',
  'plan.create': 'A plan (tier: prices and limits) created (lib/billing/plans.ts)',
  'plan.update': "A plan's name, prices, limits or status changed (lib/billing/plans.ts)",
  'subscription.change':
    'A subscription action decided here (cancel, pause, resume, items, discount) or a waiting one discarded (lib/billing/subscription-lifecycle.ts)',
  'billing.margin':
    'MSP margins brought to existing subscriptions: after a margin was made or a customer moved, or by hand; what changed and what was left (lib/billing/billing.ts, margins.ts)',
  'core.restore':
    "The core restored from a replica of meta.db and a POP's copy of the store: what came back, what was forgotten, the generation (lib/restore.ts)",
  'audit.alarm': 'A file at the audit anchor P0 that the anchor writer did not make (lib/audit)',
} as const

/** One of the keys of {@link AUDIT_KINDS}. */
export type AuditKind = keyof typeof AUDIT_KINDS

/** True when `kind` is a key of {@link AUDIT_KINDS}. */
export function isAuditKind(kind: unknown): kind is AuditKind {
  return typeof kind === 'string' && Object.hasOwn(AUDIT_KINDS, kind)
}
