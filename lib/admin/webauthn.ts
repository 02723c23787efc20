// The WebAuthn ceremonies (@simplewebauthn/server v14): enrolling a security key with a
// one-time link (setup-links.ts) and logging in with it. Challenges stay on the server, in
// `admin_challenges`, one use each. A successful ceremony opens a session (sessions.ts) in
// the same transaction as its other writes and its audit row.
import { randomBytes } from 'node:crypto'
import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/server'
import { appendEvent } from '../audit/log.js'
import { claError, isClavitorError } from '../errors.js'
import { auditAuth, auditFacts } from './audit.js'
import { MS, type AdminContext, type RequestFacts } from './context.js'
import { grantOf, hasAdmins, validateAdminName } from './humans.js'
import type { Role } from './roles.js'
import { randomToken, sha256hex } from './secrets.js'
import type { IssuedSession } from './sessions.js'
import { badToken, checkToken, IS_SETUP_LINK, voidSetupLink } from './setup-links.js'

/**
 * @simplewebauthn/server, imported on the first ceremony: it costs ~0.3 s to load, which
 * every CLI command and service start that opens a core would otherwise pay for nothing.
 */
const simpleWebAuthn = () => import('@simplewebauthn/server')

/** What an enrollment ceremony remembers between its start and its finish. */
interface RegisterCeremony {
  name: string
  role: Role
  tokenHash: string
  userId: string
}

export async function startEnrollment(
  ctx: AdminContext,
  input: { token: unknown; name: unknown },
  facts: RequestFacts,
): Promise<{ ceremonyId: string; options: PublicKeyCredentialCreationOptionsJSON }> {
  const { role } = checkToken(ctx, input.token, facts)
  const name = validateAdminName(input.name)
  if (ctx.db.prepare('SELECT 1 FROM humans WHERE name = ?').get(name)) {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      `an admin named "${name}" exists already; choose another name`,
      {
        details: { field: 'name' },
      },
    )
  }
  const userId = randomBytes(16)
  const { generateRegistrationOptions } = await simpleWebAuthn()
  const options = await generateRegistrationOptions({
    rpName: ctx.rpName,
    rpID: facts.rpID,
    userName: name,
    userDisplayName: name,
    userID: userId,
    attestationType: 'none',
    timeout: ctx.ceremonyTtlMs,
    authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
    preferredAuthenticatorType: 'securityKey',
  })
  const data: RegisterCeremony = {
    name,
    role,
    tokenHash: sha256hex(input.token as string),
    userId: userId.toString('base64url'),
  }
  const ceremonyId = storeCeremony(ctx, 'register', options.challenge, data)
  return { ceremonyId, options }
}

export async function finishEnrollment(
  ctx: AdminContext,
  input: { ceremonyId: unknown; response: unknown },
  facts: RequestFacts,
): Promise<IssuedSession> {
  const ceremony = takeCeremony(ctx, 'register', input.ceremonyId, facts)
  const data = JSON.parse(ceremony.data ?? 'null') as RegisterCeremony
  let info
  try {
    const { verifyRegistrationResponse } = await simpleWebAuthn()
    const v = await verifyRegistrationResponse({
      response: input.response as RegistrationResponseJSON,
      expectedChallenge: ceremony.challenge,
      expectedOrigin: facts.origin,
      expectedRPID: facts.rpID,
      // Security keys without a PIN give presence only; presence stays required.
      requireUserVerification: false,
    })
    if (!v.verified) throw new Error('registration response did not verify')
    info = v.registrationInfo
  } catch (cause) {
    auditAuth(ctx, 'unknown', 'refused', 'CLA_ERR_WEBAUTHN_FAILED', facts, {
      action: 'enroll',
      name: data.name,
    })
    throw claError(
      'CLA_ERR_WEBAUTHN_FAILED',
      `security key enrollment failed: ${(cause as Error).message}`,
      { cause },
    )
  }
  const humanId = 'hum_' + randomBytes(9).toString('base64url')
  const now = ctx.now()
  const session = randomToken()
  const expiresAt = now + ctx.sessionTtlMs * MS
  let voided = false
  let scope: string | null = null
  try {
    ctx.db
      .transaction(() => {
        const tok = ctx.db
          .prepare(
            `SELECT created_by, customer_id, ${IS_SETUP_LINK} AS setup FROM setup_tokens
              WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?`,
          )
          .get(data.tokenHash, now) as
          { created_by: string; customer_id: string | null; setup: number } | undefined
        if (!tok) throw badToken()
        if (tok.setup && hasAdmins(ctx)) {
          // committed (the link stays spent), then refused below
          voidSetupLink(ctx, data.tokenHash, facts, { name: data.name })
          voided = true
          return
        }
        ctx.db
          .prepare('UPDATE setup_tokens SET used_at = ?, used_by = ? WHERE token_hash = ?')
          .run(now, humanId, data.tokenHash)
        ctx.db
          .prepare(
            'INSERT INTO humans (id, name, webauthn_user_id, created_at) VALUES (?, ?, ?, ?)',
          )
          .run(humanId, data.name, data.userId, now)
        ctx.db
          .prepare(
            'INSERT INTO role_assignments (human_id, role_id, customer_id, created_at) VALUES (?, ?, ?, ?)',
          )
          .run(humanId, data.role, tok.customer_id, now)
        scope = tok.customer_id
        ctx.db
          .prepare(
            'INSERT INTO webauthn_credentials (id, human_id, public_key, counter, transports, created_at) VALUES (?, ?, ?, ?, ?, ?)',
          )
          .run(
            info.credential.id,
            humanId,
            Buffer.from(info.credential.publicKey),
            info.credential.counter,
            JSON.stringify(info.credential.transports ?? []),
            now,
          )
        ctx.db
          .prepare(
            'INSERT INTO admin_sessions (id_hash, human_id, created_at, expires_at) VALUES (?, ?, ?, ?)',
          )
          .run(sha256hex(session), humanId, now, expiresAt)
        appendEvent(ctx.db, {
          kind: 'admin.action',
          actor: humanId,
          outcome: 'ok',
          reason: 'admin.enroll',
          ...auditFacts(facts),
          data: {
            action: 'admin.enroll',
            name: data.name,
            role: data.role,
            scope: tok.customer_id,
            invitedBy: tok.created_by,
          },
        })
        // An admin exists now: every other first-admin link is void (used_at, no used_by).
        // Same transaction, so two links racing cannot both enroll.
        ctx.db
          .prepare(`UPDATE setup_tokens SET used_at = ? WHERE used_at IS NULL AND ${IS_SETUP_LINK}`)
          .run(now)
      })
      .immediate()
  } catch (err) {
    if (isClavitorError(err)) {
      if (err.code !== 'CLA_ERR_AUDIT_WRITE_FAILED') {
        auditAuth(ctx, 'unknown', 'refused', err.code, facts, {
          action: 'enroll',
          name: data.name,
        })
      }
      throw err
    }
    const msg = (err as Error).message
    if (/UNIQUE constraint failed: humans.name/.test(msg)) {
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        `an admin named "${data.name}" exists already; choose another name`,
        {
          details: { field: 'name' },
          cause: err,
        },
      )
    }
    if (/UNIQUE constraint failed: webauthn_credentials.id/.test(msg)) {
      throw claError('CLA_ERR_WEBAUTHN_FAILED', 'this security key is already enrolled', {
        cause: err,
      })
    }
    throw err
  }
  if (voided) throw badToken()
  return {
    token: session,
    expiresAt,
    human: { humanId, name: data.name, role: data.role, scope },
  }
}

export async function startLogin(
  ctx: AdminContext,
  facts: RequestFacts,
): Promise<{ ceremonyId: string; options: PublicKeyCredentialRequestOptionsJSON }> {
  // Discoverable credentials: the key tells us who it is; no user name to enumerate.
  const { generateAuthenticationOptions } = await simpleWebAuthn()
  const options = await generateAuthenticationOptions({
    rpID: facts.rpID,
    userVerification: 'preferred',
    timeout: ctx.ceremonyTtlMs,
  })
  const ceremonyId = storeCeremony(ctx, 'login', options.challenge, null)
  return { ceremonyId, options }
}

export async function finishLogin(
  ctx: AdminContext,
  input: { ceremonyId: unknown; response: unknown },
  facts: RequestFacts,
): Promise<IssuedSession> {
  const ceremony = takeCeremony(ctx, 'login', input.ceremonyId, facts)
  const response = input.response as AuthenticationResponseJSON
  const credId = typeof response?.id === 'string' ? response.id : ''
  const row = ctx.db
    .prepare(
      `SELECT c.id, c.human_id, c.public_key, c.counter, c.transports, h.name, h.disabled_at
         FROM webauthn_credentials c JOIN humans h ON h.id = c.human_id WHERE c.id = ?`,
    )
    .get(credId) as
    | {
        id: string
        human_id: string
        public_key: Buffer
        counter: number
        transports: string | null
        name: string
        disabled_at: number | null
      }
    | undefined
  const grant = row ? grantOf(ctx, row.human_id) : undefined
  if (!row || row.disabled_at !== null || !grant) {
    auditAuth(ctx, row?.human_id ?? 'unknown', 'refused', 'CLA_ERR_WEBAUTHN_FAILED', facts, {
      action: 'login',
      why: !row ? 'unknown credential' : 'admin disabled or without role',
    })
    throw claError(
      'CLA_ERR_WEBAUTHN_FAILED',
      'this security key is not enrolled here (or its admin was disabled)',
    )
  }
  let newCounter: number
  try {
    const { verifyAuthenticationResponse } = await simpleWebAuthn()
    const v = await verifyAuthenticationResponse({
      response,
      expectedChallenge: ceremony.challenge,
      expectedOrigin: facts.origin,
      expectedRPID: facts.rpID,
      credential: {
        id: row.id,
        publicKey: new Uint8Array(row.public_key),
        counter: row.counter,
        transports: JSON.parse(row.transports ?? '[]') as string[],
      },
      requireUserVerification: false,
    })
    if (!v.verified) throw new Error('authentication response did not verify')
    newCounter = v.authenticationInfo.newCounter
  } catch (cause) {
    auditAuth(ctx, row.human_id, 'refused', 'CLA_ERR_WEBAUTHN_FAILED', facts, { action: 'login' })
    throw claError(
      'CLA_ERR_WEBAUTHN_FAILED',
      `security key login failed: ${(cause as Error).message}`,
      { cause },
    )
  }
  const now = ctx.now()
  const session = randomToken()
  const expiresAt = now + ctx.sessionTtlMs * MS
  ctx.db
    .transaction(() => {
      ctx.db.prepare('DELETE FROM admin_sessions WHERE expires_at <= ?').run(now)
      ctx.db
        .prepare('UPDATE webauthn_credentials SET counter = ?, last_used_at = ? WHERE id = ?')
        .run(newCounter, now, row.id)
      ctx.db
        .prepare(
          'INSERT INTO admin_sessions (id_hash, human_id, created_at, expires_at) VALUES (?, ?, ?, ?)',
        )
        .run(sha256hex(session), row.human_id, now, expiresAt)
      appendEvent(ctx.db, {
        kind: 'admin.auth',
        actor: row.human_id,
        outcome: 'ok',
        reason: 'login',
        ...auditFacts(facts),
      })
    })
    .immediate()
  return {
    token: session,
    expiresAt,
    human: { humanId: row.human_id, name: row.name, role: grant.role, scope: grant.scope },
  }
}

/** A ceremony's challenge (and its data) kept server-side; returns the id given to the browser. */
function storeCeremony(
  ctx: AdminContext,
  kind: 'register' | 'login',
  challenge: string,
  data: unknown,
): string {
  const id = randomToken()
  const now = ctx.now()
  ctx.db
    .transaction(() => {
      ctx.db.prepare('DELETE FROM admin_challenges WHERE expires_at <= ?').run(now)
      ctx.db
        .prepare(
          'INSERT INTO admin_challenges (id_hash, kind, challenge, data, expires_at) VALUES (?, ?, ?, ?, ?)',
        )
        .run(
          sha256hex(id),
          kind,
          challenge,
          data === null ? null : JSON.stringify(data),
          now + ctx.ceremonyTtlMs * MS,
        )
    })
    .immediate()
  return id
}

/**
 * One use: the row is deleted whether or not the response then verifies. `facts` is
 * required: the refusal of an unknown or expired ceremony carries the request's ip and
 * route like every other refusal.
 */
function takeCeremony(
  ctx: AdminContext,
  kind: 'register' | 'login',
  ceremonyId: unknown,
  facts: Partial<RequestFacts>,
): { challenge: string; data: string | null } {
  const row =
    typeof ceremonyId === 'string' && ceremonyId.length <= 128
      ? (ctx.db
          .prepare(
            'DELETE FROM admin_challenges WHERE id_hash = ? AND kind = ? RETURNING challenge, data, expires_at',
          )
          .get(sha256hex(ceremonyId), kind) as
          { challenge: string; data: string | null; expires_at: number } | undefined)
      : undefined
  if (!row || row.expires_at <= ctx.now()) {
    auditAuth(ctx, 'unknown', 'refused', 'CLA_ERR_WEBAUTHN_FAILED', facts, {
      action: kind === 'login' ? 'login' : 'enroll',
      why: 'unknown or expired ceremony',
    })
    throw claError(
      'CLA_ERR_WEBAUTHN_FAILED',
      'the security key request is unknown or expired; reload the page and try again',
    )
  }
  return row
}
