// One-time enrollment links (`setup_tokens`): the first-admin link printed while no admin
// exists, and invites from an owner or the host. Only a token's sha256 is stored. Every
// first-admin link dies once an admin exists; invites stay valid until used or expired.
// Spending a link happens in the enrollment ceremony (webauthn.ts), in its transaction.
import { appendEvent } from '../audit/log.js'
import { claError } from '../errors.js'
import { auditAuth } from './audit.js'
import { perform } from './authorize.js'
import { MS, positive, type Actor, type AdminContext, type RequestFacts } from './context.js'
import { hasAdmins } from './humans.js'
import { isRole, parseRole, rank, type Role } from './roles.js'
import { parseScope, requireReach, within } from './scope.js'
import { randomToken, sha256hex } from './secrets.js'

/** A new one-time setup or invite token and what it will enroll. */
export interface IssuedToken {
  /** The token (the secret in the link); only its sha256 is stored. */
  token: string
  /** The role the enrolled admin gets. */
  role: Role
  /** The customer subtree the enrolled admin will reach, or null: the installation. */
  scope: string | null
  /** µs epoch. */
  expiresAt: number
}

/** `created_by` of a first-admin setup link (an invite names its owner, or 'system'). */
const SETUP_LINK = 'setup'
/**
 * SQL over a setup_tokens row: it is a first-admin setup link. Links printed by builds
 * before SETUP_LINK existed were made by 'system' like a host invite; their issue was
 * audited as 'setup.token' with the same expiresAt, which tells the two apart.
 */
export const IS_SETUP_LINK = `(created_by = '${SETUP_LINK}' OR (created_by = 'system' AND role_id = 'owner'
  AND EXISTS (SELECT 1 FROM events e WHERE e.kind = 'admin.action' AND e.reason = 'setup.token'
              AND json_extract(e.data, '$.expiresAt') = setup_tokens.expires_at)))`

/**
 * At start: with no admin yet, issues a one-time owner link (the setup URL carries it)
 * and returns it; with admins, returns null. A new call issues a new link (an older one
 * stays valid until it expires or is used): only the hash is stored, so a lost URL
 * cannot be printed again. Every first-admin link dies once an admin exists: the first
 * enrollment voids the others in its own transaction, and a link used after that is
 * refused, voided and audited (checkToken, finishEnrollment).
 */
export function firstAdminToken(ctx: AdminContext): IssuedToken | null {
  // check and insert in one immediate transaction: no link is issued after an enrollment
  return ctx.db
    .transaction(() =>
      hasAdmins(ctx)
        ? null
        : issueToken(ctx, 'owner', null, SETUP_LINK, ctx.setupTokenTtlMs, 'setup.token'),
    )
    .immediate()
}

/**
 * An owner invites a further admin with `role`, limited to `scope` (a customer subtree;
 * null: the installation; default: the inviting owner's own scope). Never more than the
 * owner holds: a role above theirs is CLA_ERR_ADMIN_FORBIDDEN, a scope outside theirs
 * CLA_ERR_ADMIN_SCOPE. Audited; refusals too.
 */
export function invite(
  ctx: AdminContext,
  actor: Actor,
  role: Role,
  facts: Partial<RequestFacts> = {},
  ttlMs?: number,
  scope?: unknown,
): IssuedToken {
  const grant = scope === undefined ? actor.scope : parseScope(ctx.db, scope)
  if (!within(ctx.db, actor.scope, grant))
    requireReach(
      ctx,
      actor,
      'admin.invite',
      grant === null ? 'installation' : { customer: grant },
      facts,
      { role },
    )
  return perform(ctx, actor, 'admin.invite', 'admins', facts, { role, scope: grant }, () => {
    parseRole(role)
    if (rank(role) > rank(actor.role))
      throw claError(
        'CLA_ERR_ADMIN_FORBIDDEN',
        `you cannot invite a ${role}: it is more than you hold`,
      )
    return issueToken(
      ctx,
      role,
      grant,
      actor.humanId,
      ttlMs === undefined ? ctx.inviteTtlMs : positive('ttlMs', ttlMs),
      null,
    )
  })
}

/** An invite from the host itself (`clavitor admin invite`): actor 'system', any scope. */
export function systemInvite(
  ctx: AdminContext,
  role: Role,
  ttlMs?: number,
  scope?: unknown,
): IssuedToken {
  parseRole(role)
  return issueToken(
    ctx,
    role,
    parseScope(ctx.db, scope),
    'system',
    ttlMs === undefined ? ctx.inviteTtlMs : positive('ttlMs', ttlMs),
    'admin.invite',
  )
}

function issueToken(
  ctx: AdminContext,
  role: Role,
  scope: string | null,
  createdBy: string,
  ttlMs: number,
  auditAction: string | null,
): IssuedToken {
  const token = randomToken()
  const now = ctx.now()
  const expiresAt = now + ttlMs * MS
  ctx.db
    .transaction(() => {
      ctx.db
        .prepare(
          'INSERT INTO setup_tokens (token_hash, role_id, customer_id, created_at, expires_at, created_by) VALUES (?, ?, ?, ?, ?, ?)',
        )
        .run(sha256hex(token), role, scope, now, expiresAt, createdBy)
      if (auditAction) {
        appendEvent(ctx.db, {
          kind: 'admin.action',
          actor: createdBy,
          outcome: 'ok',
          reason: auditAction,
          data: { action: auditAction, role, scope, expiresAt },
        })
      }
    })
    .immediate()
  return { token, role, scope, expiresAt }
}

/**
 * The role a token would enroll; throws CLA_ERR_ADMIN_SETUP_TOKEN when unusable. A
 * first-admin link shown after an admin exists is voided and the refusal audited.
 */
export function checkToken(
  ctx: AdminContext,
  token: unknown,
  facts: Partial<RequestFacts> = {},
): { role: Role; scope: string | null; expiresAt: number } {
  if (typeof token !== 'string' || token.length < 16 || token.length > 128) throw badToken()
  const hash = sha256hex(token)
  const row = ctx.db
    .prepare(
      `SELECT role_id, customer_id, expires_at, used_at, used_by, ${IS_SETUP_LINK} AS setup FROM setup_tokens WHERE token_hash = ?`,
    )
    .get(hash) as
    | {
        role_id: string
        customer_id: string | null
        expires_at: number
        used_at: number | null
        used_by: string | null
        setup: number
      }
    | undefined
  if (!row) throw badToken()
  // A real first-admin link that enrolled nobody, shown once an admin exists (voided at
  // the first enrollment, or now): refused and audited. Unknown tokens are not audited,
  // so guessing cannot flood the audit log (the endpoints are rate-limited per IP).
  if (row.setup && row.used_by === null && hasAdmins(ctx)) {
    ctx.db.transaction(() => voidSetupLink(ctx, hash, facts, {})).immediate()
    throw badToken()
  }
  if (row.used_at !== null || row.expires_at <= ctx.now() || !isRole(row.role_id)) throw badToken()
  return { role: row.role_id, scope: row.customer_id, expiresAt: row.expires_at }
}

/**
 * A first-admin link used while an admin exists: spent without enrolling anyone
 * (used_at set if it was not, used_by NULL) and the refusal audited. Runs inside the
 * caller's transaction.
 */
export function voidSetupLink(
  ctx: AdminContext,
  tokenHash: string,
  facts: Partial<RequestFacts>,
  data: Record<string, unknown>,
): void {
  ctx.db
    .prepare('UPDATE setup_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL')
    .run(ctx.now(), tokenHash)
  auditAuth(ctx, 'unknown', 'refused', 'CLA_ERR_ADMIN_SETUP_TOKEN', facts, {
    action: 'enroll',
    ...data,
    why: 'first-admin setup link used after an admin exists',
  })
}

export function badToken() {
  return claError(
    'CLA_ERR_ADMIN_SETUP_TOKEN',
    'this setup link is unknown, expired or already used; ask an owner for a new one',
  )
}
