// Authorisation of admin actions and their audit trail: the permission check (the table
// itself is roles.ts) and one 'admin.action' event for every attempt, whether it was
// refused, failed or succeeded. Every admin action goes through perform/performAsync.
import { appendEvent } from '../audit/log.js'
import { claError, isClavitorError } from '../errors.js'
import { auditFacts } from './audit.js'
import type { Actor, AdminContext, RequestFacts } from './context.js'
import { assertCan, can, type Permission } from './roles.js'

/**
 * Runs one admin action for `actor`: refuses (and records the refusal) when the role
 * lacks `permission`, runs `fn`, and records the outcome as an 'admin.action' event
 * (reason = `action` when it succeeded, the error code when it did not). If the audit
 * log cannot be written the action's error is CLA_ERR_AUDIT_WRITE_FAILED.
 */
export function perform<T>(
  ctx: AdminContext,
  actor: Actor,
  action: string,
  permission: Permission,
  facts: Partial<RequestFacts>,
  data: Record<string, unknown>,
  fn: () => T,
): T {
  authorize(ctx, actor, action, permission, facts, data)
  let result: T
  try {
    result = fn()
  } catch (err) {
    auditFailure(ctx, actor, action, err, facts, data)
    throw err
  }
  if (result instanceof Promise) {
    throw claError('CLA_ERR_INTERNAL', `admin action ${action}: use performAsync for async work`)
  }
  auditOk(ctx, actor, action, facts, { ...data, ...resultFacts(result) })
  return result
}

/** perform() for async work (e.g. a Billing dual-write that calls Paddle). */
export async function performAsync<T>(
  ctx: AdminContext,
  actor: Actor,
  action: string,
  permission: Permission,
  facts: Partial<RequestFacts>,
  data: Record<string, unknown>,
  fn: () => Promise<T>,
): Promise<T> {
  authorize(ctx, actor, action, permission, facts, data)
  let result: T
  try {
    result = await fn()
  } catch (err) {
    auditFailure(ctx, actor, action, err, facts, data)
    throw err
  }
  auditOk(ctx, actor, action, facts, { ...data, ...resultFacts(result) })
  return result
}

/** Throws CLA_ERR_ADMIN_FORBIDDEN (after recording the refusal) unless allowed. */
export function authorize(
  ctx: AdminContext,
  actor: Actor,
  action: string,
  permission: Permission,
  facts: Partial<RequestFacts> = {},
  data: Record<string, unknown> = {},
): void {
  if (can(actor.role, permission)) return
  appendEvent(ctx.db, {
    kind: 'admin.action',
    actor: actor.humanId,
    outcome: 'refused',
    reason: 'CLA_ERR_ADMIN_FORBIDDEN',
    ...auditFacts(facts),
    data: { action, role: actor.role, ...data },
  })
  assertCan(actor.role, permission)
}

function auditOk(
  ctx: AdminContext,
  actor: Actor,
  action: string,
  facts: Partial<RequestFacts>,
  data: Record<string, unknown>,
): void {
  appendEvent(ctx.db, {
    kind: 'admin.action',
    actor: actor.humanId,
    outcome: 'ok',
    reason: action,
    ...auditFacts(facts),
    data: { action, ...data },
  })
}

function auditFailure(
  ctx: AdminContext,
  actor: Actor,
  action: string,
  err: unknown,
  facts: Partial<RequestFacts>,
  data: Record<string, unknown>,
): void {
  const code: string = isClavitorError(err) ? err.code : 'CLA_ERR_INTERNAL'
  const outcome = isClavitorError(err) && err.status < 500 ? 'refused' : 'error'
  appendEvent(ctx.db, {
    kind: 'admin.action',
    actor: actor.humanId,
    outcome,
    reason: code,
    ...auditFacts(facts),
    data: { action, ...data, message: (err as Error)?.message },
  })
}

/** A created object's id, when the action returns one, goes into the audit row. */
function resultFacts(result: unknown): Record<string, unknown> {
  if (
    result &&
    typeof result === 'object' &&
    'id' in result &&
    typeof (result as { id: unknown }).id === 'string'
  ) {
    return { id: (result as { id: string }).id }
  }
  return {}
}
