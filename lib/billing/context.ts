// What one Billing instance's parts (crud.ts, push.ts, retry-worker.ts, snapshots.ts) share:
// the database, the Paddle client (null: not configured, writes wait), the clock, the
// retry options (they also rule the push: backoff after a failure, pages scanned before
// re-creating) and the id translation the entity descriptions map with.
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import type { Clock } from '../clock.js'
import { ENTITIES, type EntityName, type EntitySpec, type MapCtx, type Row } from './entities.js'
import type { PaddleClient } from './paddle-client.js'
import { loadRow } from './references.js'

/**
 * How rows still pending are pushed again (retry-worker.ts, push.ts); every field has a default.
 */
export interface RetryOptions {
  /** Rows pending for less than this are left to the inline call. Default 300000 (5 min). */
  minAgeMs?: number
  /** First backoff delay after a failure. Default 30000; doubles per attempt. */
  baseDelayMs?: number
  /** Backoff cap. Default 3600000 (1 h). */
  maxDelayMs?: number
  /** Rows per pass. Default 100. */
  batch?: number
  /** Worker interval. Default 30000. */
  intervalMs?: number
  /** Pages of a list scanned when looking for our id before re-creating. Default 5. */
  findPages?: number
  /**
   * After a create got no answer (timeout, broken connection, 502/504) Paddle may still
   * apply it: for this long after we gave up, the row is only looked for at Paddle, never
   * sent again, forced retry included (push.ts, "settling"). Default 300000 (5 min).
   */
  settleMs?: number
}

export interface BillingContext {
  readonly db: Db
  readonly paddle: PaddleClient | null
  readonly clock: Clock
  readonly retry: Required<RetryOptions>
  readonly map: MapCtx
}

/** The retry options with their defaults filled in. */
export function retryDefaults(o: RetryOptions = {}): Required<RetryOptions> {
  return {
    minAgeMs: o.minAgeMs ?? 300_000,
    baseDelayMs: o.baseDelayMs ?? 30_000,
    maxDelayMs: o.maxDelayMs ?? 3_600_000,
    batch: o.batch ?? 100,
    intervalMs: o.intervalMs ?? 30_000,
    findPages: o.findPages ?? 5,
    settleMs: o.settleMs ?? 300_000,
  }
}

/** Our ids ↔ Paddle's for the entity descriptions' mapping. */
export function mapCtx(db: Db): MapCtx {
  const billedThrough = (entity: EntityName, ourId: string): string | null => {
    const spec = ENTITIES[entity]
    if (!spec.billedThrough) return null
    const row = loadRow(db, spec.table, ourId)
    return row ? spec.billedThrough(row) : null
  }
  const paddleIdOf = (entity: EntityName, ourId: string): string => {
    // a department billed through its parent: the parent's Paddle object is the one
    const via = billedThrough(entity, ourId)
    if (via !== null) return paddleIdOf(entity, via)
    const r = db
      .prepare(`SELECT paddle_id FROM ${ENTITIES[entity].table} WHERE id = ?`)
      .get(ourId) as { paddle_id: string | null } | undefined
    if (!r)
      throw claError('CLA_ERR_NOT_FOUND', `${entity} ${ourId} does not exist`, {
        details: { entity, id: ourId },
      })
    if (!r.paddle_id) {
      throw claError(
        'CLA_ERR_BILLING_DEPENDENCY_PENDING',
        `waiting for ${entity} ${ourId} to reach Paddle first`,
        {
          details: { entity, id: ourId },
        },
      )
    }
    return r.paddle_id
  }
  return {
    db,
    billedThrough,
    paddleIdOf,
    ourIdOf(entity, paddleId) {
      if (!paddleId) return null
      const r = db
        .prepare(`SELECT id FROM ${ENTITIES[entity].table} WHERE paddle_id = ?`)
        .get(paddleId) as { id: string } | undefined
      return r?.id ?? paddleId
    },
  }
}

/** The clock in µs, the unit of every *_at column of ours. */
export function nowMicros(ctx: BillingContext): number {
  return ctx.clock.now() * 1000
}

export function load(ctx: BillingContext, spec: EntitySpec, id: string): Row | undefined {
  return loadRow(ctx.db, spec.table, id)
}
