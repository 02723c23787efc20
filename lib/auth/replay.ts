// Replay protection for signed POP requests: a time window on the signature's `created`
// and a nonce store in SQLite (pop_nonces), so a nonce seen inside the window is refused
// even after a core restart. Expired nonces are pruned as new ones arrive.
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'

export interface WindowOptions {
  /** How old a signature may be, seconds. Default 300. */
  maxAgeSec?: number
  /** How far in the future `created` may be (clock skew), seconds. Default 30. */
  maxSkewSec?: number
}

/** Throws CLA_ERR_AUTH_REPLAY (ts_too_old | ts_in_future) when `created` is outside. */
export function checkWindow(created: number, nowSec: number, opts: WindowOptions = {}): void {
  const maxAge = opts.maxAgeSec ?? 300
  const skew = opts.maxSkewSec ?? 30
  if (created < nowSec - maxAge) {
    throw claError(
      'CLA_ERR_AUTH_REPLAY',
      `signature created ${nowSec - created}s ago; the limit is ${maxAge}s`,
      {
        details: { reason: 'ts_too_old' },
      },
    )
  }
  if (created > nowSec + skew) {
    throw claError(
      'CLA_ERR_AUTH_REPLAY',
      `signature created ${created - nowSec}s in the future; check the POP clock`,
      {
        details: { reason: 'ts_in_future' },
      },
    )
  }
}

export class NonceStore {
  private readonly insert
  private readonly prune
  private lastPrune = 0

  constructor(readonly db: Db) {
    this.insert = db.prepare(
      'INSERT OR IGNORE INTO pop_nonces (pop_id, nonce, expires_at) VALUES (?, ?, ?)',
    )
    this.prune = db.prepare('DELETE FROM pop_nonces WHERE expires_at < ?')
  }

  /**
   * Records a nonce for a POP until `expiresAtSec` (seconds); throws CLA_ERR_AUTH_REPLAY
   * (nonce_replayed) if it is already there. Keep it past the window's end.
   */
  use(popId: string, nonce: string, expiresAtSec: number, nowSec: number): void {
    if (nonce.length === 0 || nonce.length > 128) {
      throw claError('CLA_ERR_AUTH_REPLAY', 'nonce must be 1..128 characters', {
        details: { reason: 'nonce_invalid' },
      })
    }
    if (nowSec - this.lastPrune >= 10) {
      this.prune.run(nowSec)
      this.lastPrune = nowSec
    }
    const r = this.insert.run(popId, nonce, expiresAtSec)
    if (r.changes === 0) {
      throw claError('CLA_ERR_AUTH_REPLAY', 'this nonce was already used: request replayed', {
        details: { reason: 'nonce_replayed' },
      })
    }
  }

  /** Deletes expired nonces now; returns how many. */
  pruneExpired(nowSec: number): number {
    return this.prune.run(nowSec).changes
  }
}
