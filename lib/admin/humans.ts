// The admins themselves (rows of `humans` with their `role_assignments`): listing them,
// the role each acts with, and the owner's changes to another admin (disable, role), with
// the rules that keep an installation administrable (never yourself, never the last owner).
import { appendEvent } from '../audit/log.js'
import { claError } from '../errors.js'
import { perform } from './authorize.js'
import type { Actor, AdminContext, RequestFacts } from './context.js'
import { isRole, parseRole, rank, strongest, type Role } from './roles.js'
import { requireReach, scopeWhere, type Scope } from './scope.js'

/** An admin (a human) as lists show it. Times are µs since the Unix epoch. */
export interface AdminRow {
  /** `hum_…` id. */
  id: string
  /** Unique display name. */
  name: string
  /** The admin's role; null: none (it cannot log in). */
  role: Role | null
  /** The customer subtree the admin reaches, or null: the whole installation. */
  scope: string | null
  /** The scope customer's name, for lists. */
  scope_name: string | null
  /** Security keys enrolled. */
  credentials: number
  /** When the admin was enrolled. */
  created_at: number
  /** When the admin was disabled; null: enabled. */
  disabled_at: number | null
  /** Last login with any of its keys; null: never. */
  last_used_at: number | null
}

const NAME_RE = /^[\p{L}\p{N}][\p{L}\p{N} ._@'-]{0,63}$/u

export function validateAdminName(v: unknown): string {
  const name = typeof v === 'string' ? v.trim() : ''
  if (!NAME_RE.test(name)) {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      "name must be 1 to 64 letters, digits, spaces or . _ @ ' -, starting with a letter or digit",
      {
        details: { field: 'name' },
      },
    )
  }
  return name
}

/** True when at least one enabled human holds a role. */
export function hasAdmins(ctx: AdminContext): boolean {
  return !!ctx.db
    .prepare(
      `SELECT 1 FROM humans h JOIN role_assignments r ON r.human_id = h.id WHERE h.disabled_at IS NULL LIMIT 1`,
    )
    .get()
}

/**
 * The admins, oldest first. With a scope, only those whose own scope lies within it (an
 * MSP's owner sees the admins of that MSP and of its customers, not the installation's).
 */
export function listAdmins(ctx: AdminContext, scope: Scope = null): AdminRow[] {
  const w = scopeWhere(
    '(SELECT customer_id FROM role_assignments WHERE human_id = h.id LIMIT 1)',
    scope,
  )
  const rows = ctx.db
    .prepare(
      `SELECT h.id, h.name, h.created_at, h.disabled_at,
              (SELECT group_concat(role_id) FROM role_assignments WHERE human_id = h.id) AS roles,
              (SELECT customer_id FROM role_assignments WHERE human_id = h.id LIMIT 1) AS scope,
              (SELECT c.name FROM role_assignments r JOIN customers c ON c.id = r.customer_id
                WHERE r.human_id = h.id LIMIT 1) AS scope_name,
              (SELECT count(*) FROM webauthn_credentials WHERE human_id = h.id) AS credentials,
              (SELECT max(last_used_at) FROM webauthn_credentials WHERE human_id = h.id) AS last_used_at
         FROM humans h WHERE ${w.sql} ORDER BY h.created_at, h.id`,
    )
    .all(...w.args) as Array<Omit<AdminRow, 'role'> & { roles: string | null }>
  return rows.map(({ roles, ...r }) => ({
    ...r,
    role: strongest((roles ?? '').split(',').filter(isRole)) ?? null,
  }))
}

/** The admin row for a name (CLI), or undefined. */
export function findByName(ctx: AdminContext, name: string): AdminRow | undefined {
  return listAdmins(ctx).find((a) => a.name === name)
}

/** What a human may do: a role and the scope it holds in. */
export interface Grant {
  role: Role
  scope: Scope
}

/**
 * The role a human acts with (the strongest they hold) and its scope, or undefined for
 * none. One assignment per human is what lib/admin writes (enrollment, setRole).
 */
export function grantOf(ctx: AdminContext, humanId: string): Grant | undefined {
  const rows = ctx.db
    .prepare('SELECT role_id, customer_id FROM role_assignments WHERE human_id = ?')
    .all(humanId) as Array<{ role_id: string; customer_id: string | null }>
  const role = strongest(rows.map((r) => r.role_id).filter(isRole))
  if (!role) return undefined
  return { role, scope: rows.find((r) => r.role_id === role)!.customer_id }
}

/** The role a human acts with (the strongest they hold), or undefined for none. */
export function roleOf(ctx: AdminContext, humanId: string): Role | undefined {
  return grantOf(ctx, humanId)?.role
}

/**
 * Disables an admin: their sessions end and their keys no longer log in. `actor` is an
 * owner (web UI) or 'system' (`clavitor admin disable` on the host). Refuses to disable
 * the last enabled owner, and an owner disabling themself.
 */
export function disable(
  ctx: AdminContext,
  actor: Actor | 'system',
  humanId: string,
  facts: Partial<RequestFacts> = {},
): void {
  // checks and writes in one immediate transaction: two owners cannot disable each other
  const run = () =>
    ctx.db
      .transaction(() => {
        const target = targetAdmin(ctx, humanId)
        if (target.disabled_at !== null) return { id: target.id }
        notSelf(actor, humanId, 'disable yourself')
        const grant = grantOf(ctx, humanId)
        if (grant?.role === 'owner' && grant.scope === null && enabledOwners(ctx) <= 1)
          throw claError(
            'CLA_ERR_INVALID_INPUT',
            `${target.name} is the last owner; enroll another owner first`,
          )
        ctx.db.prepare('UPDATE humans SET disabled_at = ? WHERE id = ?').run(ctx.now(), humanId)
        ctx.db.prepare('DELETE FROM admin_sessions WHERE human_id = ?').run(humanId)
        return { id: target.id }
      })
      .immediate()
  if (actor === 'system') {
    run()
    appendEvent(ctx.db, {
      kind: 'admin.action',
      actor: 'system',
      outcome: 'ok',
      reason: 'admin.disable',
      data: { action: 'admin.disable', id: humanId },
    })
    return
  }
  requireOver(ctx, actor, 'admin.disable', humanId, facts)
  perform(ctx, actor, 'admin.disable', 'admins', facts, { target: humanId }, run)
}

/**
 * Changes an admin's role; it applies from their next request (the role is looked up per
 * request, sessions stay). `actor` is an owner (web UI) or 'system' (`clavitor admin role`
 * on the host). Refuses a disabled admin, an owner changing their own role, and leaving
 * no enabled owner.
 */
export function setRole(
  ctx: AdminContext,
  actor: Actor | 'system',
  humanId: string,
  role: unknown,
  facts: Partial<RequestFacts> = {},
): { id: string; from: Role | null; to: Role } {
  const to = parseRole(role)
  const run = () =>
    ctx.db
      .transaction(() => {
        const target = targetAdmin(ctx, humanId)
        if (target.disabled_at !== null)
          throw claError('CLA_ERR_INVALID_INPUT', `${target.name} is disabled`)
        notSelf(actor, humanId, 'change your own role')
        const grant = grantOf(ctx, humanId)
        const from = grant?.role ?? null
        const scope = grant?.scope ?? null
        if (actor !== 'system' && rank(to) > rank(actor.role))
          throw claError(
            'CLA_ERR_ADMIN_FORBIDDEN',
            `you cannot grant ${to}: it is more than you hold`,
          )
        if (from === 'owner' && scope === null && to !== 'owner' && enabledOwners(ctx) <= 1)
          throw claError(
            'CLA_ERR_INVALID_INPUT',
            `${target.name} is the last owner; enroll another owner first`,
          )
        ctx.db.prepare('DELETE FROM role_assignments WHERE human_id = ?').run(humanId)
        ctx.db
          .prepare(
            'INSERT INTO role_assignments (human_id, role_id, customer_id, created_at) VALUES (?, ?, ?, ?)',
          )
          .run(humanId, to, scope, ctx.now())
        return { id: target.id, from, to }
      })
      .immediate()
  if (actor === 'system') {
    const r = run()
    appendEvent(ctx.db, {
      kind: 'admin.action',
      actor: 'system',
      outcome: 'ok',
      reason: 'admin.role',
      data: { action: 'admin.role', id: humanId, from: r.from, to: r.to },
    })
    return r
  }
  requireOver(ctx, actor, 'admin.role', humanId, facts)
  return perform(ctx, actor, 'admin.role', 'admins', facts, { target: humanId, role: to }, run)
}

/**
 * A scoped owner acts only on admins whose scope lies within theirs (an installation-wide
 * admin is outside every subtree). CLA_ERR_ADMIN_SCOPE, audited, otherwise.
 */
function requireOver(
  ctx: AdminContext,
  actor: Actor,
  action: string,
  humanId: string,
  facts: Partial<RequestFacts>,
): void {
  if (actor.scope === null) return
  const scope = grantOf(ctx, humanId)?.scope ?? null
  requireReach(ctx, actor, action, scope === null ? 'installation' : { customer: scope }, facts, {
    target: humanId,
  })
}

/** The admin an owner acts on (disable, role change); CLA_ERR_NOT_FOUND if unknown. */
function targetAdmin(
  ctx: AdminContext,
  humanId: string,
): { id: string; name: string; disabled_at: number | null } {
  const target = ctx.db
    .prepare('SELECT id, name, disabled_at FROM humans WHERE id = ?')
    .get(humanId) as { id: string; name: string; disabled_at: number | null } | undefined
  if (!target) throw claError('CLA_ERR_NOT_FOUND', `no admin ${humanId}`)
  return target
}

/** Enabled owners of the whole installation (a scoped owner cannot administer the rest). */
function enabledOwners(ctx: AdminContext): number {
  return ctx.db
    .prepare(
      `SELECT count(*) FROM humans h JOIN role_assignments r ON r.human_id = h.id
        WHERE r.role_id = 'owner' AND r.customer_id IS NULL AND h.disabled_at IS NULL`,
    )
    .pluck()
    .get() as number
}

/** An owner never acts on their own account (another owner must). */
function notSelf(actor: Actor | 'system', humanId: string, what: string): void {
  if (actor !== 'system' && actor.humanId === humanId)
    throw claError('CLA_ERR_INVALID_INPUT', `you cannot ${what}; ask another owner`)
}
