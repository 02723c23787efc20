// Which part of the installation an admin reaches. An admin's scope is a customer id, the
// root of a subtree (an MSP and everything below it; a customer and its departments; one
// department), or null: the whole installation. An invite carries the scope it grants,
// role_assignments.customer_id holds it, and every read and action of lib/admin passes the
// acting admin's scope through here: lists and counts filter by it (scopeWhere), actions
// on an object check it (reach) and refuse, audited, with CLA_ERR_ADMIN_SCOPE. What
// belongs to nobody's subtree (POPs, the audit log, MSP margins, creating an MSP) is for
// installation-wide admins only.
import { appendEvent } from '../audit/log.js'
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import { auditFacts } from './audit.js'
import type { Actor, AdminContext, RequestFacts } from './context.js'

/** A customer id (the root of the subtree an admin reaches) or null (the installation). */
export type Scope = string | null

/**
 * What an action touches: a customer (its subtree must hold it), or 'installation' for
 * what only an installation-wide admin may see or change.
 */
export type Reach = { customer: string | null } | 'installation'

/** SQL of the ids of one customer (the single argument) and of every customer below it. */
export const SUBTREE_SQL = `WITH RECURSIVE sub(id) AS (SELECT ? UNION ALL SELECT c.id FROM customers c JOIN sub ON c.parent_id = sub.id) SELECT id FROM sub`

/** A WHERE condition limiting `column` (a customer id) to the scope, with its arguments. */
export function scopeWhere(column: string, scope: Scope): { sql: string; args: unknown[] } {
  if (scope === null) return { sql: '1 = 1', args: [] }
  return { sql: `${column} IN (${SUBTREE_SQL})`, args: [scope] }
}

/** The customer is the scope's root or below it (the installation holds every customer). */
export function inScope(db: Db, scope: Scope, customerId: string | null | undefined): boolean {
  if (scope === null) return true
  if (!customerId) return false
  const parent = db.prepare('SELECT parent_id FROM customers WHERE id = ?').pluck()
  // the hierarchy is at most three levels deep; the bound only guards against a bad row
  let id: string | null | undefined = customerId
  for (let depth = 0; depth < 8 && id; depth++) {
    if (id === scope) return true
    id = parent.get(id) as string | null | undefined
  }
  return false
}

/** Scope `inner` lies within `outer`: what a grant may give (never wider than held). */
export function within(db: Db, outer: Scope, inner: Scope): boolean {
  if (outer === null) return true
  if (inner === null) return false
  return inScope(db, outer, inner)
}

/**
 * A scope from input: empty or missing is the installation; otherwise an existing placed
 * customer (an MSP, a customer or a department). CLA_ERR_INVALID_INPUT otherwise.
 */
export function parseScope(db: Db, v: unknown): Scope {
  if (v === undefined || v === null || v === '') return null
  const id = typeof v === 'string' ? v.trim() : ''
  const row = id
    ? (db.prepare('SELECT level FROM customers WHERE id = ?').get(id) as
        { level: number } | undefined)
    : undefined
  if (!row || row.level === 0) {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      'scope must be empty (the whole installation) or the id of an MSP, customer or department',
      { details: { field: 'scope' } },
    )
  }
  return id
}

/** The reach is within the actor's scope. */
export function reaches(db: Db, actor: Actor, reach: Reach): boolean {
  if (actor.scope === null) return true
  if (reach === 'installation') return false
  return inScope(db, actor.scope, reach.customer)
}

/**
 * Throws CLA_ERR_ADMIN_SCOPE, after recording the refusal as an 'admin.action' event,
 * unless the actor's scope holds what the action touches.
 */
export function requireReach(
  ctx: AdminContext,
  actor: Actor,
  action: string,
  reach: Reach,
  facts: Partial<RequestFacts> = {},
  data: Record<string, unknown> = {},
): void {
  if (reaches(ctx.db, actor, reach)) return
  appendEvent(ctx.db, {
    kind: 'admin.action',
    actor: actor.humanId,
    outcome: 'refused',
    reason: 'CLA_ERR_ADMIN_SCOPE',
    ...auditFacts(facts),
    data: {
      action,
      scope: actor.scope,
      ...(reach === 'installation' ? { installation: true } : { customer: reach.customer }),
      ...data,
    },
  })
  throw outOfScope(reach)
}

/** The refusal itself (also what a read of an object outside the scope answers). */
export function outOfScope(reach: Reach) {
  return reach === 'installation'
    ? claError(
        'CLA_ERR_ADMIN_SCOPE',
        'this is for installation-wide admins only; your access is limited to one customer subtree',
      )
    : claError(
        'CLA_ERR_ADMIN_SCOPE',
        `${reach.customer ?? 'this object'} is outside your scope (the customers you were invited to manage)`,
        { details: { customer: reach.customer } },
      )
}
