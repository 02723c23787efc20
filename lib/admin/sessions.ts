// Admin sessions (`admin_sessions`): the cookie value is random and only its sha256 is
// stored; a session ends at its absolute lifetime, after sessionIdleMs without a request,
// when its admin is disabled or at logout. Sessions are opened by the WebAuthn ceremonies
// (webauthn.ts), in the same transaction as the rest of a login or enrollment.
import { appendEvent } from '../audit/log.js'
import { auditFacts } from './audit.js'
import { MS, type Actor, type AdminContext, type RequestFacts } from './context.js'
import { grantOf } from './humans.js'
import { sha256hex } from './secrets.js'

export interface AdminSession extends Actor {
  /** sha256 of the cookie value: the session's row id (used to tie CSRF tokens to it). */
  sessionHash: string
  expiresAt: number
}

/** A new admin session: the cookie value to set, its expiry and who it is. */
export interface IssuedSession {
  /** The cookie value (random, 43 characters). Only its sha256 is stored. */
  token: string
  /** µs epoch. */
  expiresAt: number
  /** The admin the session acts as: id, name, role and scope. */
  human: Actor
}

/** A session's last use is written at most this often (µs): one write a minute, not per page. */
const SESSION_TOUCH_US = 60 * 1000 * MS

/**
 * The session behind a cookie value, or null (unknown, expired, idle too long, admin
 * disabled or roleless). A live session's last use is recorded (at most once a minute).
 */
export function session(ctx: AdminContext, cookieValue: unknown): AdminSession | null {
  if (typeof cookieValue !== 'string' || cookieValue.length < 16 || cookieValue.length > 128)
    return null
  const hash = sha256hex(cookieValue)
  const row = ctx.db
    .prepare(
      `SELECT s.human_id, s.created_at, s.expires_at, s.last_seen_at, h.name, h.disabled_at
        FROM admin_sessions s JOIN humans h ON h.id = s.human_id WHERE s.id_hash = ?`,
    )
    .get(hash) as
    | {
        human_id: string
        created_at: number
        expires_at: number
        last_seen_at: number | null
        name: string
        disabled_at: number | null
      }
    | undefined
  if (!row) return null
  const now = ctx.now()
  const lastSeen = row.last_seen_at ?? row.created_at
  if (
    row.expires_at <= now ||
    now - lastSeen >= ctx.sessionIdleMs * MS ||
    row.disabled_at !== null
  ) {
    ctx.db.prepare('DELETE FROM admin_sessions WHERE id_hash = ?').run(hash)
    return null
  }
  if (now - lastSeen >= SESSION_TOUCH_US)
    ctx.db.prepare('UPDATE admin_sessions SET last_seen_at = ? WHERE id_hash = ?').run(now, hash)
  const grant = grantOf(ctx, row.human_id)
  if (!grant) return null
  return {
    humanId: row.human_id,
    name: row.name,
    role: grant.role,
    scope: grant.scope,
    sessionHash: hash,
    expiresAt: row.expires_at,
  }
}

export function logout(
  ctx: AdminContext,
  cookieValue: unknown,
  facts: Partial<RequestFacts> = {},
): void {
  const s = session(ctx, cookieValue)
  if (!s) return
  ctx.db
    .transaction(() => {
      ctx.db.prepare('DELETE FROM admin_sessions WHERE id_hash = ?').run(s.sessionHash)
      appendEvent(ctx.db, {
        kind: 'admin.auth',
        actor: s.humanId,
        outcome: 'ok',
        reason: 'logout',
        ...auditFacts(facts),
      })
    })
    .immediate()
}
