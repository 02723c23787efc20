// Admin authentication and authorisation, without HTTP: humans and their roles, one-time
// setup/invite tokens, WebAuthn ceremonies (@simplewebauthn/server v14) whose challenges
// stay on the server, sessions stored as sha256 of the cookie value, and the audit trail
// of every admin action (lib/audit, kind 'admin.action' / 'admin.auth').
//
// The apps pass in what only they know (the RP id and origin of the request, the client
// IP) and get back values to put in cookies; every decision is made here.
import { randomBytes } from 'node:crypto'
import {
  generateAuthenticationOptions,
  generateRegistrationOptions,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
  type AuthenticationResponseJSON,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
  type RegistrationResponseJSON,
} from '@simplewebauthn/server'
import { appendEvent } from '../audit/log.js'
import { nowMicros, type Db } from '../db/open.js'
import { claError, isClavitorError, type ErrorCode } from '../errors.js'
import {
  assertCan,
  can,
  isRole,
  parseRole,
  strongest,
  type Permission,
  type Role,
} from './roles.js'
import { randomToken, sha256hex } from './secrets.js'

export interface AdminOptions {
  /** Relying-party name shown by the authenticator. Default 'Clavitor admin'. */
  rpName?: string
  /** Session lifetime (absolute) in ms. Default 8 hours. */
  sessionTtlMs?: number
  /** A session unused this long (ms) ends, whatever its absolute lifetime. Default 30 minutes. */
  sessionIdleMs?: number
  /** Lifetime of the first-admin setup token in ms. Default 24 hours. */
  setupTokenTtlMs?: number
  /** Default lifetime of an invite token in ms. Default 72 hours. */
  inviteTtlMs?: number
  /** Time a WebAuthn ceremony may take, in ms. Default 5 minutes. */
  ceremonyTtlMs?: number
  /** Clock in µs since the epoch (tests). Default lib/db nowMicros. */
  now?: () => number
}

/** Who is acting: the result of a valid session. */
export interface Actor {
  humanId: string
  name: string
  role: Role
}

export interface AdminSession extends Actor {
  /** sha256 of the cookie value: the session's row id (used to tie CSRF tokens to it). */
  sessionHash: string
  expiresAt: number
}

export interface IssuedSession {
  /** The cookie value (random, 43 characters). Only its sha256 is stored. */
  token: string
  /** µs epoch. */
  expiresAt: number
  human: Actor
}

export interface IssuedToken {
  token: string
  role: Role
  /** µs epoch. */
  expiresAt: number
}

export interface AdminRow {
  id: string
  name: string
  role: Role | null
  credentials: number
  created_at: number
  disabled_at: number | null
  last_used_at: number | null
}

/** What the app knows about the request, for WebAuthn checks and the audit trail. */
export interface RequestFacts {
  /** e.g. 'localhost' or 'admin.example.com' (no scheme, no port). */
  rpID: string
  /** e.g. 'http://localhost:8080' */
  origin: string
  ip?: string
  route?: string
}

interface RegisterCeremony {
  name: string
  role: Role
  tokenHash: string
  userId: string
}

/** `created_by` of a first-admin setup link (an invite names its owner, or 'system'). */
const SETUP_LINK = 'setup'
/**
 * SQL over a setup_tokens row: it is a first-admin setup link. Links printed by builds
 * before SETUP_LINK existed were made by 'system' like a host invite; their issue was
 * audited as 'setup.token' with the same expiresAt, which tells the two apart.
 */
const IS_SETUP_LINK = `(created_by = '${SETUP_LINK}' OR (created_by = 'system' AND role_id = 'owner'
  AND EXISTS (SELECT 1 FROM events e WHERE e.kind = 'admin.action' AND e.reason = 'setup.token'
              AND json_extract(e.data, '$.expiresAt') = setup_tokens.expires_at)))`
const NAME_RE = /^[\p{L}\p{N}][\p{L}\p{N} ._@'-]{0,63}$/u
const MS = 1000 // µs per ms
/** A session's last use is written at most this often (µs): one write a minute, not per page. */
const SESSION_TOUCH_US = 60 * 1000 * MS

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

export class Admin {
  readonly db: Db
  readonly rpName: string
  readonly sessionTtlMs: number
  readonly sessionIdleMs: number
  readonly setupTokenTtlMs: number
  readonly inviteTtlMs: number
  readonly ceremonyTtlMs: number
  private readonly now: () => number

  constructor(db: Db, opts: AdminOptions = {}) {
    this.db = db
    this.rpName = opts.rpName ?? 'Clavitor admin'
    this.sessionTtlMs = positive('sessionTtlMs', opts.sessionTtlMs ?? 8 * 3600_000)
    this.sessionIdleMs = positive('sessionIdleMs', opts.sessionIdleMs ?? 30 * 60_000)
    this.setupTokenTtlMs = positive('setupTokenTtlMs', opts.setupTokenTtlMs ?? 24 * 3600_000)
    this.inviteTtlMs = positive('inviteTtlMs', opts.inviteTtlMs ?? 72 * 3600_000)
    this.ceremonyTtlMs = positive('ceremonyTtlMs', opts.ceremonyTtlMs ?? 5 * 60_000)
    this.now = opts.now ?? nowMicros
  }

  // --- humans ---------------------------------------------------------------------------

  /** True when at least one enabled human holds a role. */
  hasAdmins(): boolean {
    return !!this.db
      .prepare(
        `SELECT 1 FROM humans h JOIN role_assignments r ON r.human_id = h.id WHERE h.disabled_at IS NULL LIMIT 1`,
      )
      .get()
  }

  listAdmins(): AdminRow[] {
    const rows = this.db
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

  private roleOf(humanId: string): Role | undefined {
    const rows = this.db
      .prepare('SELECT role_id FROM role_assignments WHERE human_id = ?')
      .all(humanId) as Array<{
      role_id: string
    }>
    return strongest(rows.map((r) => r.role_id).filter(isRole))
  }

  // --- setup and invite tokens -----------------------------------------------------------

  /**
   * At start: with no admin yet, issues a one-time owner link (the setup URL carries it)
   * and returns it; with admins, returns null. A new call issues a new link (an older one
   * stays valid until it expires or is used): only the hash is stored, so a lost URL
   * cannot be printed again. Every first-admin link dies once an admin exists: the first
   * enrollment voids the others in its own transaction, and a link used after that is
   * refused, voided and audited (checkToken, finishEnrollment).
   */
  firstAdminToken(): IssuedToken | null {
    // check and insert in one immediate transaction: no link is issued after an enrollment
    return this.db
      .transaction(() =>
        this.hasAdmins()
          ? null
          : this.issueToken('owner', SETUP_LINK, this.setupTokenTtlMs, 'setup.token'),
      )
      .immediate()
  }

  /** An owner invites a further admin with `role`. Audited; refused (and audited) for others. */
  invite(actor: Actor, role: Role, facts: Partial<RequestFacts> = {}, ttlMs?: number): IssuedToken {
    return this.perform(actor, 'admin.invite', 'admins', facts, { role }, () => {
      parseRole(role)
      return this.issueToken(
        role,
        actor.humanId,
        ttlMs === undefined ? this.inviteTtlMs : positive('ttlMs', ttlMs),
        null,
      )
    })
  }

  /** An invite from the host itself (`clavitor admin invite`): actor 'system'. */
  systemInvite(role: Role, ttlMs?: number): IssuedToken {
    parseRole(role)
    return this.issueToken(
      role,
      'system',
      ttlMs === undefined ? this.inviteTtlMs : positive('ttlMs', ttlMs),
      'admin.invite',
    )
  }

  /**
   * Disables an admin: their sessions end and their keys no longer log in. `actor` is an
   * owner (web UI) or 'system' (`clavitor admin disable` on the host). Refuses to disable
   * the last enabled owner, and an owner disabling themself.
   */
  disable(actor: Actor | 'system', humanId: string, facts: Partial<RequestFacts> = {}): void {
    // checks and writes in one immediate transaction: two owners cannot disable each other
    const run = () =>
      this.db
        .transaction(() => {
          const target = this.targetAdmin(humanId)
          if (target.disabled_at !== null) return { id: target.id }
          notSelf(actor, humanId, 'disable yourself')
          if (this.roleOf(humanId) === 'owner' && this.enabledOwners() <= 1)
            throw claError(
              'CLA_ERR_INVALID_INPUT',
              `${target.name} is the last owner; enroll another owner first`,
            )
          this.db.prepare('UPDATE humans SET disabled_at = ? WHERE id = ?').run(this.now(), humanId)
          this.db.prepare('DELETE FROM admin_sessions WHERE human_id = ?').run(humanId)
          return { id: target.id }
        })
        .immediate()
    if (actor === 'system') {
      run()
      appendEvent(this.db, {
        kind: 'admin.action',
        actor: 'system',
        outcome: 'ok',
        reason: 'admin.disable',
        data: { action: 'admin.disable', id: humanId },
      })
      return
    }
    this.perform(actor, 'admin.disable', 'admins', facts, { target: humanId }, run)
  }

  /**
   * Changes an admin's role; it applies from their next request (the role is looked up per
   * request, sessions stay). `actor` is an owner (web UI) or 'system' (`clavitor admin role`
   * on the host). Refuses a disabled admin, an owner changing their own role, and leaving
   * no enabled owner.
   */
  setRole(
    actor: Actor | 'system',
    humanId: string,
    role: unknown,
    facts: Partial<RequestFacts> = {},
  ): { id: string; from: Role | null; to: Role } {
    const to = parseRole(role)
    const run = () =>
      this.db
        .transaction(() => {
          const target = this.targetAdmin(humanId)
          if (target.disabled_at !== null)
            throw claError('CLA_ERR_INVALID_INPUT', `${target.name} is disabled`)
          notSelf(actor, humanId, 'change your own role')
          const from = this.roleOf(humanId) ?? null
          if (from === 'owner' && to !== 'owner' && this.enabledOwners() <= 1)
            throw claError(
              'CLA_ERR_INVALID_INPUT',
              `${target.name} is the last owner; enroll another owner first`,
            )
          this.db.prepare('DELETE FROM role_assignments WHERE human_id = ?').run(humanId)
          this.db
            .prepare(
              'INSERT INTO role_assignments (human_id, role_id, customer_id, created_at) VALUES (?, ?, NULL, ?)',
            )
            .run(humanId, to, this.now())
          return { id: target.id, from, to }
        })
        .immediate()
    if (actor === 'system') {
      const r = run()
      appendEvent(this.db, {
        kind: 'admin.action',
        actor: 'system',
        outcome: 'ok',
        reason: 'admin.role',
        data: { action: 'admin.role', id: humanId, from: r.from, to: r.to },
      })
      return r
    }
    return this.perform(actor, 'admin.role', 'admins', facts, { target: humanId, role: to }, run)
  }

  /** The admin an owner acts on (disable, role change); CLA_ERR_NOT_FOUND if unknown. */
  private targetAdmin(humanId: string): { id: string; name: string; disabled_at: number | null } {
    const target = this.db
      .prepare('SELECT id, name, disabled_at FROM humans WHERE id = ?')
      .get(humanId) as { id: string; name: string; disabled_at: number | null } | undefined
    if (!target) throw claError('CLA_ERR_NOT_FOUND', `no admin ${humanId}`)
    return target
  }

  private enabledOwners(): number {
    return this.db
      .prepare(
        `SELECT count(*) FROM humans h JOIN role_assignments r ON r.human_id = h.id
          WHERE r.role_id = 'owner' AND h.disabled_at IS NULL`,
      )
      .pluck()
      .get() as number
  }

  /** The admin row for a name (CLI), or undefined. */
  findByName(name: string): AdminRow | undefined {
    return this.listAdmins().find((a) => a.name === name)
  }

  private issueToken(
    role: Role,
    createdBy: string,
    ttlMs: number,
    auditAction: string | null,
  ): IssuedToken {
    const token = randomToken()
    const now = this.now()
    const expiresAt = now + ttlMs * MS
    this.db
      .transaction(() => {
        this.db
          .prepare(
            'INSERT INTO setup_tokens (token_hash, role_id, created_at, expires_at, created_by) VALUES (?, ?, ?, ?, ?)',
          )
          .run(sha256hex(token), role, now, expiresAt, createdBy)
        if (auditAction) {
          appendEvent(this.db, {
            kind: 'admin.action',
            actor: createdBy,
            outcome: 'ok',
            reason: auditAction,
            data: { action: auditAction, role, expiresAt },
          })
        }
      })
      .immediate()
    return { token, role, expiresAt }
  }

  /**
   * The role a token would enroll; throws CLA_ERR_ADMIN_SETUP_TOKEN when unusable. A
   * first-admin link shown after an admin exists is voided and the refusal audited.
   */
  checkToken(token: unknown, facts: Partial<RequestFacts> = {}): { role: Role; expiresAt: number } {
    if (typeof token !== 'string' || token.length < 16 || token.length > 128) throw badToken()
    const hash = sha256hex(token)
    const row = this.db
      .prepare(
        `SELECT role_id, expires_at, used_at, used_by, ${IS_SETUP_LINK} AS setup FROM setup_tokens WHERE token_hash = ?`,
      )
      .get(hash) as
      | {
          role_id: string
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
    if (row.setup && row.used_by === null && this.hasAdmins()) {
      this.db.transaction(() => this.voidSetupLink(hash, facts, {})).immediate()
      throw badToken()
    }
    if (row.used_at !== null || row.expires_at <= this.now() || !isRole(row.role_id))
      throw badToken()
    return { role: row.role_id, expiresAt: row.expires_at }
  }

  /**
   * A first-admin link used while an admin exists: spent without enrolling anyone
   * (used_at set if it was not, used_by NULL) and the refusal audited. Runs inside the
   * caller's transaction.
   */
  private voidSetupLink(
    tokenHash: string,
    facts: Partial<RequestFacts>,
    data: Record<string, unknown>,
  ): void {
    this.db
      .prepare('UPDATE setup_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL')
      .run(this.now(), tokenHash)
    this.auditAuth('unknown', 'refused', 'CLA_ERR_ADMIN_SETUP_TOKEN', facts, {
      action: 'enroll',
      ...data,
      why: 'first-admin setup link used after an admin exists',
    })
  }

  // --- WebAuthn: enrollment --------------------------------------------------------------

  async startEnrollment(
    input: { token: unknown; name: unknown },
    facts: RequestFacts,
  ): Promise<{ ceremonyId: string; options: PublicKeyCredentialCreationOptionsJSON }> {
    const { role } = this.checkToken(input.token, facts)
    const name = validateAdminName(input.name)
    if (this.db.prepare('SELECT 1 FROM humans WHERE name = ?').get(name)) {
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        `an admin named "${name}" exists already; choose another name`,
        {
          details: { field: 'name' },
        },
      )
    }
    const userId = randomBytes(16)
    const options = await generateRegistrationOptions({
      rpName: this.rpName,
      rpID: facts.rpID,
      userName: name,
      userDisplayName: name,
      userID: userId,
      attestationType: 'none',
      timeout: this.ceremonyTtlMs,
      authenticatorSelection: { residentKey: 'preferred', userVerification: 'preferred' },
      preferredAuthenticatorType: 'securityKey',
    })
    const data: RegisterCeremony = {
      name,
      role,
      tokenHash: sha256hex(input.token as string),
      userId: userId.toString('base64url'),
    }
    const ceremonyId = this.storeCeremony('register', options.challenge, data)
    return { ceremonyId, options }
  }

  async finishEnrollment(
    input: { ceremonyId: unknown; response: unknown },
    facts: RequestFacts,
  ): Promise<IssuedSession> {
    const ceremony = this.takeCeremony('register', input.ceremonyId)
    const data = JSON.parse(ceremony.data ?? 'null') as RegisterCeremony
    let info
    try {
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
      this.auditAuth('unknown', 'refused', 'CLA_ERR_WEBAUTHN_FAILED', facts, {
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
    const now = this.now()
    const session = randomToken()
    const expiresAt = now + this.sessionTtlMs * MS
    let voided = false
    try {
      this.db
        .transaction(() => {
          const tok = this.db
            .prepare(
              `SELECT created_by, ${IS_SETUP_LINK} AS setup FROM setup_tokens
                WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?`,
            )
            .get(data.tokenHash, now) as { created_by: string; setup: number } | undefined
          if (!tok) throw badToken()
          if (tok.setup && this.hasAdmins()) {
            // committed (the link stays spent), then refused below
            this.voidSetupLink(data.tokenHash, facts, { name: data.name })
            voided = true
            return
          }
          this.db
            .prepare('UPDATE setup_tokens SET used_at = ?, used_by = ? WHERE token_hash = ?')
            .run(now, humanId, data.tokenHash)
          this.db
            .prepare(
              'INSERT INTO humans (id, name, webauthn_user_id, created_at) VALUES (?, ?, ?, ?)',
            )
            .run(humanId, data.name, data.userId, now)
          this.db
            .prepare(
              'INSERT INTO role_assignments (human_id, role_id, customer_id, created_at) VALUES (?, ?, NULL, ?)',
            )
            .run(humanId, data.role, now)
          this.db
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
          this.db
            .prepare(
              'INSERT INTO admin_sessions (id_hash, human_id, created_at, expires_at) VALUES (?, ?, ?, ?)',
            )
            .run(sha256hex(session), humanId, now, expiresAt)
          appendEvent(this.db, {
            kind: 'admin.action',
            actor: humanId,
            outcome: 'ok',
            reason: 'admin.enroll',
            ...auditFacts(facts),
            data: {
              action: 'admin.enroll',
              name: data.name,
              role: data.role,
              invitedBy: tok.created_by,
            },
          })
          // An admin exists now: every other first-admin link is void (used_at, no used_by).
          // Same transaction, so two links racing cannot both enroll.
          this.db
            .prepare(
              `UPDATE setup_tokens SET used_at = ? WHERE used_at IS NULL AND ${IS_SETUP_LINK}`,
            )
            .run(now)
        })
        .immediate()
    } catch (err) {
      if (isClavitorError(err)) {
        if (err.code !== 'CLA_ERR_AUDIT_WRITE_FAILED') {
          this.auditAuth('unknown', 'refused', err.code, facts, {
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
    return { token: session, expiresAt, human: { humanId, name: data.name, role: data.role } }
  }

  // --- WebAuthn: login -------------------------------------------------------------------

  async startLogin(
    facts: RequestFacts,
  ): Promise<{ ceremonyId: string; options: PublicKeyCredentialRequestOptionsJSON }> {
    // Discoverable credentials: the key tells us who it is; no user name to enumerate.
    const options = await generateAuthenticationOptions({
      rpID: facts.rpID,
      userVerification: 'preferred',
      timeout: this.ceremonyTtlMs,
    })
    const ceremonyId = this.storeCeremony('login', options.challenge, null)
    return { ceremonyId, options }
  }

  async finishLogin(
    input: { ceremonyId: unknown; response: unknown },
    facts: RequestFacts,
  ): Promise<IssuedSession> {
    const ceremony = this.takeCeremony('login', input.ceremonyId, facts)
    const response = input.response as AuthenticationResponseJSON
    const credId = typeof response?.id === 'string' ? response.id : ''
    const row = this.db
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
    const role = row ? this.roleOf(row.human_id) : undefined
    if (!row || row.disabled_at !== null || !role) {
      this.auditAuth(row?.human_id ?? 'unknown', 'refused', 'CLA_ERR_WEBAUTHN_FAILED', facts, {
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
      this.auditAuth(row.human_id, 'refused', 'CLA_ERR_WEBAUTHN_FAILED', facts, { action: 'login' })
      throw claError(
        'CLA_ERR_WEBAUTHN_FAILED',
        `security key login failed: ${(cause as Error).message}`,
        { cause },
      )
    }
    const now = this.now()
    const session = randomToken()
    const expiresAt = now + this.sessionTtlMs * MS
    this.db
      .transaction(() => {
        this.db.prepare('DELETE FROM admin_sessions WHERE expires_at <= ?').run(now)
        this.db
          .prepare('UPDATE webauthn_credentials SET counter = ?, last_used_at = ? WHERE id = ?')
          .run(newCounter, now, row.id)
        this.db
          .prepare(
            'INSERT INTO admin_sessions (id_hash, human_id, created_at, expires_at) VALUES (?, ?, ?, ?)',
          )
          .run(sha256hex(session), row.human_id, now, expiresAt)
        appendEvent(this.db, {
          kind: 'admin.auth',
          actor: row.human_id,
          outcome: 'ok',
          reason: 'login',
          ...auditFacts(facts),
        })
      })
      .immediate()
    return { token: session, expiresAt, human: { humanId: row.human_id, name: row.name, role } }
  }

  // --- sessions --------------------------------------------------------------------------

  /**
   * The session behind a cookie value, or null (unknown, expired, idle too long, admin
   * disabled or roleless). A live session's last use is recorded (at most once a minute).
   */
  session(cookieValue: unknown): AdminSession | null {
    if (typeof cookieValue !== 'string' || cookieValue.length < 16 || cookieValue.length > 128)
      return null
    const hash = sha256hex(cookieValue)
    const row = this.db
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
    const now = this.now()
    const lastSeen = row.last_seen_at ?? row.created_at
    if (
      row.expires_at <= now ||
      now - lastSeen >= this.sessionIdleMs * MS ||
      row.disabled_at !== null
    ) {
      this.db.prepare('DELETE FROM admin_sessions WHERE id_hash = ?').run(hash)
      return null
    }
    if (now - lastSeen >= SESSION_TOUCH_US)
      this.db.prepare('UPDATE admin_sessions SET last_seen_at = ? WHERE id_hash = ?').run(now, hash)
    const role = this.roleOf(row.human_id)
    if (!role) return null
    return {
      humanId: row.human_id,
      name: row.name,
      role,
      sessionHash: hash,
      expiresAt: row.expires_at,
    }
  }

  logout(cookieValue: unknown, facts: Partial<RequestFacts> = {}): void {
    const s = this.session(cookieValue)
    if (!s) return
    this.db
      .transaction(() => {
        this.db.prepare('DELETE FROM admin_sessions WHERE id_hash = ?').run(s.sessionHash)
        appendEvent(this.db, {
          kind: 'admin.auth',
          actor: s.humanId,
          outcome: 'ok',
          reason: 'logout',
          ...auditFacts(facts),
        })
      })
      .immediate()
  }

  // --- authorisation and audit -------------------------------------------------------------

  /**
   * Runs one admin action for `actor`: refuses (and records the refusal) when the role
   * lacks `permission`, runs `fn`, and records the outcome as an 'admin.action' event
   * (reason = `action` when it succeeded, the error code when it did not). If the audit
   * log cannot be written the action's error is CLA_ERR_AUDIT_WRITE_FAILED.
   */
  perform<T>(
    actor: Actor,
    action: string,
    permission: Permission,
    facts: Partial<RequestFacts>,
    data: Record<string, unknown>,
    fn: () => T,
  ): T {
    this.authorize(actor, action, permission, facts, data)
    let result: T
    try {
      result = fn()
    } catch (err) {
      this.auditFailure(actor, action, err, facts, data)
      throw err
    }
    if (result instanceof Promise) {
      throw claError('CLA_ERR_INTERNAL', `admin action ${action}: use performAsync for async work`)
    }
    this.auditOk(actor, action, facts, { ...data, ...resultFacts(result) })
    return result
  }

  /** perform() for async work (e.g. a Billing dual-write that calls Paddle). */
  async performAsync<T>(
    actor: Actor,
    action: string,
    permission: Permission,
    facts: Partial<RequestFacts>,
    data: Record<string, unknown>,
    fn: () => Promise<T>,
  ): Promise<T> {
    this.authorize(actor, action, permission, facts, data)
    let result: T
    try {
      result = await fn()
    } catch (err) {
      this.auditFailure(actor, action, err, facts, data)
      throw err
    }
    this.auditOk(actor, action, facts, { ...data, ...resultFacts(result) })
    return result
  }

  /** Throws CLA_ERR_ADMIN_FORBIDDEN (after recording the refusal) unless allowed. */
  authorize(
    actor: Actor,
    action: string,
    permission: Permission,
    facts: Partial<RequestFacts> = {},
    data: Record<string, unknown> = {},
  ): void {
    if (can(actor.role, permission)) return
    appendEvent(this.db, {
      kind: 'admin.action',
      actor: actor.humanId,
      outcome: 'refused',
      reason: 'CLA_ERR_ADMIN_FORBIDDEN',
      ...auditFacts(facts),
      data: { action, role: actor.role, ...data },
    })
    assertCan(actor.role, permission)
  }

  private auditOk(
    actor: Actor,
    action: string,
    facts: Partial<RequestFacts>,
    data: Record<string, unknown>,
  ): void {
    appendEvent(this.db, {
      kind: 'admin.action',
      actor: actor.humanId,
      outcome: 'ok',
      reason: action,
      ...auditFacts(facts),
      data: { action, ...data },
    })
  }

  private auditFailure(
    actor: Actor,
    action: string,
    err: unknown,
    facts: Partial<RequestFacts>,
    data: Record<string, unknown>,
  ): void {
    const code: string = isClavitorError(err) ? err.code : 'CLA_ERR_INTERNAL'
    const outcome = isClavitorError(err) && err.status < 500 ? 'refused' : 'error'
    appendEvent(this.db, {
      kind: 'admin.action',
      actor: actor.humanId,
      outcome,
      reason: code,
      ...auditFacts(facts),
      data: { action, ...data, message: (err as Error)?.message },
    })
  }

  private auditAuth(
    actor: string,
    outcome: string,
    reason: ErrorCode | string,
    facts: Partial<RequestFacts>,
    data: Record<string, unknown>,
  ): void {
    appendEvent(this.db, { kind: 'admin.auth', actor, outcome, reason, ...auditFacts(facts), data })
  }

  // --- ceremonies --------------------------------------------------------------------------

  private storeCeremony(kind: 'register' | 'login', challenge: string, data: unknown): string {
    const id = randomToken()
    const now = this.now()
    this.db
      .transaction(() => {
        this.db.prepare('DELETE FROM admin_challenges WHERE expires_at <= ?').run(now)
        this.db
          .prepare(
            'INSERT INTO admin_challenges (id_hash, kind, challenge, data, expires_at) VALUES (?, ?, ?, ?, ?)',
          )
          .run(
            sha256hex(id),
            kind,
            challenge,
            data === null ? null : JSON.stringify(data),
            now + this.ceremonyTtlMs * MS,
          )
      })
      .immediate()
    return id
  }

  /** One use: the row is deleted whether or not the response then verifies. */
  private takeCeremony(
    kind: 'register' | 'login',
    ceremonyId: unknown,
    facts: Partial<RequestFacts> = {},
  ): { challenge: string; data: string | null } {
    const row =
      typeof ceremonyId === 'string' && ceremonyId.length <= 128
        ? (this.db
            .prepare(
              'DELETE FROM admin_challenges WHERE id_hash = ? AND kind = ? RETURNING challenge, data, expires_at',
            )
            .get(sha256hex(ceremonyId), kind) as
            { challenge: string; data: string | null; expires_at: number } | undefined)
        : undefined
    if (!row || row.expires_at <= this.now()) {
      this.auditAuth('unknown', 'refused', 'CLA_ERR_WEBAUTHN_FAILED', facts, {
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
}

function positive(name: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0)
    throw claError('CLA_ERR_INVALID_OPTION', `admin option ${name} must be a positive number of ms`)
  return v
}

function badToken() {
  return claError(
    'CLA_ERR_ADMIN_SETUP_TOKEN',
    'this setup link is unknown, expired or already used; ask an owner for a new one',
  )
}

function auditFacts(facts: Partial<RequestFacts>): { ip?: string; route?: string } {
  return { ...(facts.ip ? { ip: facts.ip } : {}), ...(facts.route ? { route: facts.route } : {}) }
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

/** An owner never acts on their own account (another owner must). */
function notSelf(actor: Actor | 'system', humanId: string, what: string): void {
  if (actor !== 'system' && actor.humanId === humanId)
    throw claError('CLA_ERR_INVALID_INPUT', `you cannot ${what}; ask another owner`)
}
