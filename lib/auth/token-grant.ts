// The two token routes' decisions (POST /pop/v1/token and /pop/v1/token/refresh), for a
// POP already authenticated by its certificate and signature (lib/auth/pop-auth.ts):
// issue or rotate, audit (kind pop.token), and the JSON answer. The app only routes.
import type { Db } from '../db/open.js'
import { appendEvent } from '../audit/log.js'
import { ClavitorError } from '../errors.js'
import { normalizeIp } from './allowlist.js'
import { reasonOf } from './pop-auth.js'
import {
  ACCESS_TOKEN_TTL_SEC,
  issueAccessToken,
  issueRefreshToken,
  rotateRefreshToken,
} from './tokens.js'

export interface TokenGrantInput {
  popId: string
  fingerprint: string
  ip: string | undefined
  /** Seconds since the epoch. */
  nowSec: number
  /** The current signing secret (the first of the token secrets). */
  secret: Buffer
}

/** The answer of both token routes (docs/security.md). */
export interface TokenResponse {
  access_token: string
  token_type: 'Bearer'
  expires_in: number
  expires_at: number
  refresh_token: string
  refresh_expires_at: number
  now: number
}

/** A new access token and a new refresh-token chain, audited as token_issued. */
export function grantTokens(db: Db, g: TokenGrantInput): TokenResponse {
  const access = issueAccessToken(g.secret, g.popId, g.fingerprint, g.nowSec)
  const refresh = issueRefreshToken(db, g.popId, g.fingerprint, g.nowSec)
  appendEvent(db, {
    kind: 'pop.token',
    actor: g.popId,
    outcome: 'ok',
    reason: 'token_issued',
    fingerprint: g.fingerprint,
    ip: normalizeIp(g.ip),
  })
  return tokenResponse(access, refresh, g.nowSec)
}

/**
 * Consumes `presented` (the next of its chain is returned with a new access token, audited
 * as token_refreshed) or refuses it, audited with its reason: a reused token revokes its
 * whole chain (lib/auth/tokens.ts) and throws.
 */
export function refreshTokens(db: Db, presented: string, g: TokenGrantInput): TokenResponse {
  let refresh
  try {
    refresh = rotateRefreshToken(db, presented, {
      popId: g.popId,
      fingerprint: g.fingerprint,
      nowSec: g.nowSec,
    })
  } catch (err) {
    appendEvent(db, {
      kind: 'pop.token',
      actor: g.popId,
      outcome: 'refused',
      reason: reasonOf(err),
      fingerprint: g.fingerprint,
      ip: normalizeIp(g.ip),
      data: err instanceof ClavitorError ? { chainId: err.details?.chainId ?? null } : undefined,
    })
    throw err
  }
  const access = issueAccessToken(g.secret, g.popId, g.fingerprint, g.nowSec)
  appendEvent(db, {
    kind: 'pop.token',
    actor: g.popId,
    outcome: 'ok',
    reason: 'token_refreshed',
    fingerprint: g.fingerprint,
    ip: normalizeIp(g.ip),
    data: { chainId: refresh.chainId },
  })
  return tokenResponse(access, refresh, g.nowSec)
}

function tokenResponse(
  access: { token: string; expiresAt: number },
  refresh: { token: string; expiresAt: number },
  nowSec: number,
): TokenResponse {
  return {
    access_token: access.token,
    token_type: 'Bearer',
    expires_in: ACCESS_TOKEN_TTL_SEC,
    expires_at: access.expiresAt,
    refresh_token: refresh.token,
    refresh_expires_at: refresh.expiresAt,
    now: nowSec,
  }
}
