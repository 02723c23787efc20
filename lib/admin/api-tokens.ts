// Per-admin API tokens for the JSON admin API (server/admin/api.ts): made in the web UI,
// shown once, stored as sha256 only, revocable. A token has no rights of its own: each
// request acts as its admin, with the role and scope that admin holds at that moment, so
// a role change, a disable or a narrower scope applies to their tokens at once.
// Token format: cla_adm_<id hex>_<secret>, the id to find the row, the secret to check it.
import { randomBytes, timingSafeEqual } from 'node:crypto'
import { claError } from '../errors.js'
import { auditAuth } from './audit.js'
import { perform } from './authorize.js'
import { MS, type Actor, type AdminContext, type RequestFacts } from './context.js'
import { grantOf } from './humans.js'
import { sha256hex } from './secrets.js'

/** A token's public facts (never its secret). */
export interface ApiTokenInfo {
  id: string
  human_id: string
  name: string
  created_at: number
  last_used_at: number | null
  revoked_at: number | null
}

/** At most this many live tokens per admin (a leak is easier to find among few). */
export const MAX_TOKENS_PER_ADMIN = 20
/** A token's last use is written at most this often (µs), not on every request. */
const TOUCH_US = 60 * 1000 * MS
const TOKEN_RE = /^cla_adm_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/
const NAME_RE = /^[\p{L}\p{N}][\p{L}\p{N} ._:@'-]{0,63}$/u

/**
 * A new token for the acting admin, named `name` (what it is for). The token is in the
 * answer once and never again. Any role may hold tokens: they carry that role. Audited.
 */
export function createApiToken(
  ctx: AdminContext,
  actor: Actor,
  name: unknown,
  facts: Partial<RequestFacts> = {},
): { id: string; token: string; name: string } {
  const label = typeof name === 'string' ? name.trim() : ''
  return perform(ctx, actor, 'admin.token.create', 'read', facts, { name: label }, () => {
    if (!NAME_RE.test(label))
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        "token name must be 1 to 64 letters, digits, spaces or . _ : @ ' -",
        { details: { field: 'name' } },
      )
    return ctx.db
      .transaction(() => {
        const live = ctx.db
          .prepare(
            'SELECT count(*) FROM admin_api_tokens WHERE human_id = ? AND revoked_at IS NULL',
          )
          .pluck()
          .get(actor.humanId) as number
        if (live >= MAX_TOKENS_PER_ADMIN)
          throw claError(
            'CLA_ERR_INVALID_INPUT',
            `you hold ${live} live API tokens, the most allowed; revoke one first`,
          )
        const id = randomBytes(8).toString('hex')
        const secret = randomBytes(32).toString('base64url')
        ctx.db
          .prepare(
            'INSERT INTO admin_api_tokens (id, human_id, name, token_hash, created_at) VALUES (?, ?, ?, ?, ?)',
          )
          .run(`tok_${id}`, actor.humanId, label, sha256hex(secret), ctx.now())
        return { id: `tok_${id}`, token: `cla_adm_${id}_${secret}`, name: label }
      })
      .immediate()
  })
}

/** The acting admin's own tokens, newest first (revoked ones too, marked). */
export function listApiTokens(ctx: AdminContext, actor: Actor): ApiTokenInfo[] {
  return ctx.db
    .prepare(
      `SELECT id, human_id, name, created_at, last_used_at, revoked_at FROM admin_api_tokens
        WHERE human_id = ? ORDER BY created_at DESC, id`,
    )
    .all(actor.humanId) as ApiTokenInfo[]
}

/**
 * Revokes one of the acting admin's own tokens (idempotent). Someone else's token is
 * CLA_ERR_NOT_FOUND: an admin's tokens end with the admin (disable), not one by one.
 */
export function revokeApiToken(
  ctx: AdminContext,
  actor: Actor,
  id: string,
  facts: Partial<RequestFacts> = {},
): ApiTokenInfo {
  return perform(ctx, actor, 'admin.token.revoke', 'read', facts, { token: id }, () =>
    ctx.db
      .transaction(() => {
        const row = ctx.db
          .prepare(
            'SELECT id, human_id, name, created_at, last_used_at, revoked_at FROM admin_api_tokens WHERE id = ? AND human_id = ?',
          )
          .get(id, actor.humanId) as ApiTokenInfo | undefined
        if (!row) throw claError('CLA_ERR_NOT_FOUND', `you hold no API token ${id}`)
        if (row.revoked_at !== null) return row
        const at = ctx.now()
        ctx.db.prepare('UPDATE admin_api_tokens SET revoked_at = ? WHERE id = ?').run(at, id)
        return { ...row, revoked_at: at }
      })
      .immediate(),
  )
}

/**
 * The admin a bearer token acts as (role and scope as held now), or
 * CLA_ERR_ADMIN_UNAUTHENTICATED: malformed, unknown, wrong secret, revoked, or its admin
 * disabled or without a role. Refusals of a token that exists are audited; unknown ones
 * are not (guessing must not flood the log; the route is rate-limited).
 */
export function authenticateApiToken(
  ctx: AdminContext,
  token: unknown,
  facts: Partial<RequestFacts> = {},
): Actor & { tokenId: string } {
  const m = typeof token === 'string' ? TOKEN_RE.exec(token) : null
  if (!m) throw unauthenticated()
  const id = `tok_${m[1]}`
  const row = ctx.db
    .prepare(
      `SELECT t.human_id, t.token_hash, t.revoked_at, t.last_used_at, h.name, h.disabled_at
         FROM admin_api_tokens t JOIN humans h ON h.id = t.human_id WHERE t.id = ?`,
    )
    .get(id) as
    | {
        human_id: string
        token_hash: string
        revoked_at: number | null
        last_used_at: number | null
        name: string
        disabled_at: number | null
      }
    | undefined
  if (!row) throw unauthenticated()
  const presented = Buffer.from(sha256hex(m[2]!), 'hex')
  if (!timingSafeEqual(presented, Buffer.from(row.token_hash, 'hex'))) {
    auditAuth(ctx, row.human_id, 'refused', 'CLA_ERR_ADMIN_UNAUTHENTICATED', facts, {
      action: 'api',
      token: id,
      why: 'wrong secret',
    })
    throw unauthenticated()
  }
  const grant = grantOf(ctx, row.human_id)
  if (row.revoked_at !== null || row.disabled_at !== null || !grant) {
    auditAuth(ctx, row.human_id, 'refused', 'CLA_ERR_ADMIN_UNAUTHENTICATED', facts, {
      action: 'api',
      token: id,
      why: row.revoked_at !== null ? 'token revoked' : 'admin disabled or without role',
    })
    throw unauthenticated()
  }
  const now = ctx.now()
  if (row.last_used_at === null || now - row.last_used_at >= TOUCH_US)
    ctx.db.prepare('UPDATE admin_api_tokens SET last_used_at = ? WHERE id = ?').run(now, id)
  return {
    humanId: row.human_id,
    name: row.name,
    role: grant.role,
    scope: grant.scope,
    tokenId: id,
  }
}

function unauthenticated() {
  return claError(
    'CLA_ERR_ADMIN_UNAUTHENTICATED',
    'a valid admin API token is required: Authorization: Bearer cla_adm_…',
  )
}
