// The admins themselves (rows of `humans` with their `role_assignments`): listing them,
// the role each acts with, and the owner's changes to another admin (disable, role), with
// the rules that keep an installation administrable (never yourself, never the last owner).
import { appendEvent } from '../audit/log.js'
import { claError } from '../errors.js'
import { perform } from './authorize.js'
import type { Actor, AdminContext, RequestFacts } from './context.js'
import { isRole, parseRole, strongest, type Role } from './roles.js'

export interface AdminRow {
  id: string
  name: string
  role: Role | null
  credentials: number
  created_at: number
  disabled_at: number | null
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

export function listAdmins(ctx: AdminContext): AdminRow[] {
  const rows = ctx.db
    .prepare(
      `SELECT h.id, h.name, h.created_at, h.disabled_at,
              (SELECT group_concat(role_id) FROM role_assignments WHERE human_id = h.id) AS roles,
              (SELECT count(*) FROM webauthn_credentials WHERE human_id = h.id) AS credentials,
              (SELECT max(last_used_at) FROM webauthn_credentials WHERE human_id = h.id) AS last_used_at
         FROM humans h ORDER BY h.created_at, h.id`,
    )
    .all() as Array<Omit<AdminRow, 'role'> & { roles: string | null }>
  return rows.map(({ roles, ...r }) => ({
    ...r,
    role: strongest((roles ?? '').split(',').filter(isRole)) ?? null,
  }))
}

/** The admin row for a name (CLI), or undefined. */
export function findByName(ctx: AdminContext, name: string): AdminRow | undefined {
  return listAdmins(ctx).find((a) => a.name === name)
}

/** The role a human acts with (the strongest they hold), or undefined for none. */
export function roleOf(ctx: AdminContext, humanId: string): Role | undefined {
  const rows = ctx.db
    .prepare('SELECT role_id FROM role_assignments WHERE human_id = ?')
    .all(humanId) as Array<{
    role_id: string
  }>
  return strongest(rows.map((r) => r.role_id).filter(isRole))
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
        if (roleOf(ctx, humanId) === 'owner' && enabledOwners(ctx) <= 1)
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
        const from = roleOf(ctx, humanId) ?? null
        if (from === 'owner' && to !== 'owner' && enabledOwners(ctx) <= 1)
          throw claError(
            'CLA_ERR_INVALID_INPUT',
            `${target.name} is the last owner; enroll another owner first`,
          )
        ctx.db.prepare('DELETE FROM role_assignments WHERE human_id = ?').run(humanId)
        ctx.db
          .prepare(
            'INSERT INTO role_assignments (human_id, role_id, customer_id, created_at) VALUES (?, ?, NULL, ?)',
          )
          .run(humanId, to, ctx.now())
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
  return perform(ctx, actor, 'admin.role', 'admins', facts, { target: humanId, role: to }, run)
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

function enabledOwners(ctx: AdminContext): number {
  return ctx.db
    .prepare(
      `SELECT count(*) FROM humans h JOIN role_assignments r ON r.human_id = h.id
        WHERE r.role_id = 'owner' AND h.disabled_at IS NULL`,
    )
    .pluck()
    .get() as number
}

/** An owner never acts on their own account (another owner must). */
function notSelf(actor: Actor | 'system', humanId: string, what: string): void {
  if (actor !== 'system' && actor.humanId === humanId)
    throw claError('CLA_ERR_INVALID_INPUT', `you cannot ${what}; ask another owner`)
}
