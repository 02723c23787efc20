// The audit rows lib/admin writes outside perform() (authorize.ts): 'admin.auth' rows for
// logins, logouts and refused ceremonies, and the request facts every admin row carries.
import { appendEvent } from '../audit/log.js'
import type { ErrorCode } from '../errors.js'
import type { AdminContext, RequestFacts } from './context.js'

export function auditFacts(facts: Partial<RequestFacts>): { ip?: string; route?: string } {
  return { ...(facts.ip ? { ip: facts.ip } : {}), ...(facts.route ? { route: facts.route } : {}) }
}

export function auditAuth(
  ctx: AdminContext,
  actor: string,
  outcome: string,
  reason: ErrorCode | string,
  facts: Partial<RequestFacts>,
  data: Record<string, unknown>,
): void {
  appendEvent(ctx.db, { kind: 'admin.auth', actor, outcome, reason, ...auditFacts(facts), data })
}
