// Short-lived POP access tokens and rotating refresh tokens.
//
// Access token: "cpt1.<payload>.<mac>", payload = base64url(JSON {pop, fp, iat, exp, jti}),
// mac = base64url(HMAC-SHA256(secret, "cpt1." + payload)). Valid 5 minutes, bound to the
// certificate fingerprint (fp): presented over a connection with another certificate it
// is refused. The secret is {data}/keys/pop-token.key (32 random bytes, hex, 0600);
// rotateTokenSecret keeps the previous one as pop-token.key.prev so tokens issued just
// before a rotation stay valid until they expire.
//
// Refresh token: 32 random bytes, base64url, stored only as its sha256 in
// pop_refresh_tokens with a chain id. Each refresh consumes the presented token and
// issues the next of the same chain; presenting a consumed (or revoked) token revokes the
// whole chain (the POP must then trade its certificate + signature for a new pair).
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { dataLayout } from '../db/data-dir.js'
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'

export const ACCESS_TOKEN_TTL_SEC = 300
export const REFRESH_TOKEN_TTL_SEC = 24 * 3600
const PREFIX = 'cpt1'

export function tokenSecretPaths(dataDir: string) {
  const k = dataLayout(dataDir).keys
  return { dir: k.dir, current: k.popToken, previous: k.popTokenPrevious }
}

/** Loads the token secrets (creating the current one if missing): [current, previous?]. */
export function loadTokenSecrets(dataDir: string): Buffer[] {
  const p = tokenSecretPaths(dataDir)
  if (!existsSync(p.current)) {
    mkdirSync(p.dir, { recursive: true, mode: 0o700 })
    try {
      writeFileSync(p.current, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
  }
  const read = (f: string) => {
    const hex = readFileSync(f, 'utf8').trim()
    if (!/^[0-9a-f]{64}$/.test(hex))
      throw claError('CLA_ERR_INVALID_OPTION', `${f} must hold 64 hex characters`)
    return Buffer.from(hex, 'hex')
  }
  const out = [read(p.current)]
  if (existsSync(p.previous)) out.push(read(p.previous))
  return out
}

/** Makes a new current secret; the old one becomes the previous (still accepted). */
export function rotateTokenSecret(dataDir: string): void {
  const p = tokenSecretPaths(dataDir)
  loadTokenSecrets(dataDir)
  const tmp = p.current + '.new'
  writeFileSync(tmp, randomBytes(32).toString('hex') + '\n', { mode: 0o600 })
  chmodSync(tmp, 0o600)
  renameSync(p.current, p.previous)
  renameSync(tmp, p.current)
}

function tokenError(reason: string, message: string) {
  return claError('CLA_ERR_AUTH_TOKEN', message, { details: { reason } })
}

function mac(secret: Buffer, data: string): Buffer {
  return createHmac('sha256', secret).update(data).digest()
}

export interface AccessClaims {
  pop: string
  fp: string
  iat: number
  exp: number
  jti: string
}

export function issueAccessToken(
  secret: Buffer,
  popId: string,
  fingerprint: string,
  nowSec: number,
): { token: string; expiresAt: number } {
  const claims: AccessClaims = {
    pop: popId,
    fp: fingerprint,
    iat: nowSec,
    exp: nowSec + ACCESS_TOKEN_TTL_SEC,
    jti: randomBytes(9).toString('base64url'),
  }
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url')
  const signed = `${PREFIX}.${payload}`
  return { token: `${signed}.${mac(secret, signed).toString('base64url')}`, expiresAt: claims.exp }
}

/**
 * Verifies an access token against any of `secrets`, the POP id and certificate
 * fingerprint of this connection. Reasons: token_invalid | token_expired | token_wrong_cert.
 */
export function verifyAccessToken(
  secrets: readonly Buffer[],
  token: string,
  expect: { popId: string; fingerprint: string; nowSec: number },
): AccessClaims {
  const parts = token.split('.')
  if (
    parts.length !== 3 ||
    parts[0] !== PREFIX ||
    !/^[A-Za-z0-9_-]+$/.test(parts[1]!) ||
    !/^[A-Za-z0-9_-]{43}$/.test(parts[2]!)
  ) {
    throw tokenError('token_invalid', 'the access token is malformed')
  }
  const given = Buffer.from(parts[2]!, 'base64url')
  const signed = `${PREFIX}.${parts[1]}`
  if (!secrets.some((s) => timingSafeEqual(mac(s, signed), given))) {
    throw tokenError('token_invalid', 'the access token signature does not verify')
  }
  let claims: AccessClaims
  try {
    claims = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as AccessClaims
  } catch {
    throw tokenError('token_invalid', 'the access token payload is not JSON')
  }
  if (typeof claims.exp !== 'number' || claims.exp <= expect.nowSec) {
    throw tokenError('token_expired', 'the access token has expired; refresh it')
  }
  if (claims.pop !== expect.popId || claims.fp !== expect.fingerprint) {
    throw tokenError('token_wrong_cert', 'the access token was issued to another certificate')
  }
  return claims
}

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex')

export interface RefreshTokenRow {
  token_hash: string
  pop_id: string
  chain_id: string
  cert_fingerprint: string
  created_at: number
  expires_at: number
  used_at: number | null
  revoked_at: number | null
}

/** Starts a new refresh chain (after a certificate + signature login). Times in seconds. */
export function issueRefreshToken(
  db: Db,
  popId: string,
  fingerprint: string,
  nowSec: number,
  chainId?: string,
): { token: string; expiresAt: number } {
  const token = randomBytes(32).toString('base64url')
  const expiresAt = nowSec + REFRESH_TOKEN_TTL_SEC
  db.prepare(
    `INSERT INTO pop_refresh_tokens (token_hash, pop_id, chain_id, cert_fingerprint, created_at, expires_at)
     VALUES (?, ?, ?, ?, ?, ?)`,
  ).run(
    sha256(token),
    popId,
    chainId ?? randomBytes(12).toString('hex'),
    fingerprint,
    nowSec,
    expiresAt,
  )
  return { token, expiresAt }
}

/**
 * Consumes a refresh token and issues the next one of its chain. A consumed or revoked
 * token revokes the whole chain and throws (reason refresh_reused); it is the caller's
 * job to audit that. Other reasons: refresh_invalid | refresh_expired | token_wrong_cert.
 */
export function rotateRefreshToken(
  db: Db,
  token: string,
  expect: { popId: string; fingerprint: string; nowSec: number },
): { token: string; expiresAt: number; chainId: string } {
  if (typeof token !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(token)) {
    throw tokenError('refresh_invalid', 'the refresh token is malformed')
  }
  const outcome = db
    .transaction(() => {
      const row = db
        .prepare('SELECT * FROM pop_refresh_tokens WHERE token_hash = ?')
        .get(sha256(token)) as RefreshTokenRow | undefined
      if (!row || row.pop_id !== expect.popId)
        return { error: tokenError('refresh_invalid', 'unknown refresh token') }
      if (row.used_at !== null || row.revoked_at !== null) {
        db.prepare(
          'UPDATE pop_refresh_tokens SET revoked_at = ? WHERE chain_id = ? AND revoked_at IS NULL',
        ).run(expect.nowSec, row.chain_id)
        return {
          error: claError(
            'CLA_ERR_AUTH_TOKEN',
            'this refresh token was already used: the whole chain is revoked',
            {
              details: { reason: 'refresh_reused', chainId: row.chain_id },
            },
          ),
        }
      }
      if (row.cert_fingerprint !== expect.fingerprint)
        return {
          error: tokenError(
            'token_wrong_cert',
            'the refresh token was issued to another certificate',
          ),
        }
      if (row.expires_at <= expect.nowSec)
        return { error: tokenError('refresh_expired', 'the refresh token has expired') }
      db.prepare('UPDATE pop_refresh_tokens SET used_at = ? WHERE token_hash = ?').run(
        expect.nowSec,
        row.token_hash,
      )
      return {
        next: {
          ...issueRefreshToken(db, row.pop_id, row.cert_fingerprint, expect.nowSec, row.chain_id),
          chainId: row.chain_id,
        },
      }
    })
    .immediate()
  // the chain revocation above is committed before we throw
  if ('error' in outcome && outcome.error) throw outcome.error
  return outcome.next!
}

/** Revokes every live refresh token of a POP (on removal or certificate rotation). */
export function revokePopRefreshTokens(db: Db, popId: string, nowSec: number): number {
  return db
    .prepare('UPDATE pop_refresh_tokens SET revoked_at = ? WHERE pop_id = ? AND revoked_at IS NULL')
    .run(nowSec, popId).changes
}
