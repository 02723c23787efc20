// Paddle webhooks: verify Paddle-Signature on the raw bytes before anything is stored,
// record event_id (a duplicate is a no-op that still answers 200), then apply the entity
// snapshot only when its occurred_at is newer than what the row last applied. Unknown
// event types are stored and acknowledged (Paddle retries anything but a 2xx). A signed
// event that breaks a rule (occurred_at not a timestamp, a subscription moved to another
// customer) is parked: stored with the reason, not applied, raised as an alarm, answered 200.
import { createHmac, timingSafeEqual } from 'node:crypto'
import { claError } from '../errors.js'
import type { Billing } from './billing.js'
import { isRfc3339 } from './rfc3339.js'
import {
  applyEvent,
  recordEvent,
  type EventSource,
  type PaddleEvent,
  type WebhookResult,
} from './events.js'

export {
  eventEntity,
  PARKED_OCCURRED_AT,
  recordEvent,
  type EventSink,
  type EventSource,
  type PaddleEvent,
  type WebhookResult,
} from './events.js'

export interface VerifyOptions {
  /** Value of the Paddle-Signature header: `ts=<unix s>;h1=<hex>[;h1=<hex>…]`. */
  header: string | undefined
  /** The exact bytes received. */
  rawBody: Buffer | string
  /** Destination secrets (several during rotation); any may match. */
  secrets: readonly string[]
  /** Accepted |now − ts| in seconds, both directions. Default 10. */
  toleranceS?: number
  /** Current time in ms. Default Date.now(). */
  nowMs?: number
}

/** Throws CLA_ERR_PADDLE_SIGNATURE unless some h1 matches some secret within the window. Returns ts. */
export function verifyPaddleSignature(opts: VerifyOptions): number {
  const fail = (why: string): never => {
    throw claError('CLA_ERR_PADDLE_SIGNATURE', `Paddle-Signature rejected: ${why}`, {
      details: { reason: why },
    })
  }
  if (opts.secrets.length === 0) {
    throw claError(
      'CLA_ERR_PADDLE_NOT_CONFIGURED',
      'no Paddle webhook secret configured (CLAVITOR_PADDLE_WEBHOOK_SECRET)',
    )
  }
  if (!opts.header) return fail('header missing')
  let ts: string | undefined
  const h1: Buffer[] = []
  for (const part of opts.header.split(';')) {
    const eq = part.indexOf('=')
    if (eq < 0) continue
    const k = part.slice(0, eq).trim()
    const v = part.slice(eq + 1).trim()
    if (k === 'ts') ts = v
    else if (k === 'h1' && /^[0-9a-f]{64}$/i.test(v)) h1.push(Buffer.from(v, 'hex'))
  }
  if (!ts || !/^\d{1,12}$/.test(ts)) return fail('no ts')
  if (h1.length === 0) return fail('no h1')
  const tsNum = Number(ts)
  const now = (opts.nowMs ?? Date.now()) / 1000
  const tolerance = opts.toleranceS ?? 10
  if (Math.abs(now - tsNum) > tolerance) return fail(`ts ${ts} outside the ${tolerance} s window`)
  const body = typeof opts.rawBody === 'string' ? Buffer.from(opts.rawBody, 'utf8') : opts.rawBody
  let ok = false
  for (const secret of opts.secrets) {
    const expected = createHmac('sha256', secret).update(`${ts}:`).update(body).digest()
    for (const sig of h1) if (timingSafeEqual(expected, sig)) ok = true // no early exit: constant work
  }
  if (!ok) return fail('no h1 matches')
  return tsNum
}

/**
 * Verifies, records and applies one delivery. Throws CLA_ERR_PADDLE_SIGNATURE (401) before
 * storing anything, CLA_ERR_INVALID_INPUT (400) for a signed body that is not an event.
 */
export function handlePaddleWebhook(
  billing: Billing,
  rawBody: Buffer,
  signatureHeader: string | undefined,
): WebhookResult {
  verifyPaddleSignature({
    header: signatureHeader,
    rawBody,
    secrets: billing.webhookOptions.secrets,
    toleranceS: billing.webhookOptions.toleranceS,
    nowMs: billing.clock.now(),
  })
  let ev: PaddleEvent
  try {
    ev = JSON.parse(rawBody.toString('utf8'))
  } catch (cause) {
    throw claError('CLA_ERR_INVALID_INPUT', 'webhook body is not JSON', { cause })
  }
  return recordEvent(billing, ev, rawBody.toString('utf8'), 'webhook')
}

/** One stored Paddle event (a row of `paddle_events` without its payload). */
export interface StoredEvent {
  event_id: string
  event_type: string
  occurred_at: string
  /** µs epoch when we stored it. */
  received_at: number
  outcome: string
  /** `webhook` (a signed delivery) or `events` (read from GET /events by reconcile). */
  source: EventSource
}

/** Stored deliveries, newest first; `failed`: only those not applied (error or parked). */
export function listEvents(
  billing: Billing,
  opts: { failed?: boolean; limit?: number } = {},
): StoredEvent[] {
  const limit = Math.min(Math.max(Math.trunc(opts.limit ?? 100), 1), 1000)
  return billing.db
    .prepare(
      `SELECT event_id, event_type, occurred_at, received_at, outcome, source FROM paddle_events
       WHERE (@failed = 0 OR outcome LIKE 'error:%' OR outcome LIKE 'parked:%')
       ORDER BY received_at DESC, event_id DESC LIMIT @limit`,
    )
    .all({ failed: opts.failed ? 1 : 0, limit }) as StoredEvent[]
}

/**
 * Applies a stored event that was not applied (error or parked) again, after a fix (a
 * parent created, a bug fixed): the same rules as a delivery (order by occurred_at, parks).
 * Its outcome is updated and the replay audited (kind `webhook`, reason `replayed`).
 * CLA_ERR_NOT_FOUND for an unknown event, CLA_ERR_INVALID_INPUT for one that was applied.
 */
export function replayEvent(billing: Billing, eventId: string): StoredEvent & { before: string } {
  const db = billing.db
  return db
    .transaction(() => {
      const row = db
        .prepare(
          'SELECT event_id, event_type, occurred_at, received_at, outcome, source, payload FROM paddle_events WHERE event_id = ?',
        )
        .get(eventId) as (StoredEvent & { payload: string }) | undefined
      if (!row)
        throw claError('CLA_ERR_NOT_FOUND', `no stored Paddle event ${eventId}`, {
          details: { event_id: eventId },
        })
      if (!row.outcome.startsWith('error:') && !row.outcome.startsWith('parked:'))
        throw claError(
          'CLA_ERR_INVALID_INPUT',
          `event ${eventId} was not left unapplied (outcome ${row.outcome}); only failed or parked events are replayed`,
          { details: { event_id: eventId, outcome: row.outcome } },
        )
      const ev = JSON.parse(row.payload) as { data?: unknown }
      const timed = isRfc3339(row.occurred_at)
      const { outcome, alarm } = applyEvent(
        billing,
        row.event_type,
        eventId,
        ev.data,
        timed ? row.occurred_at : null,
        row.occurred_at,
      )
      db.prepare('UPDATE paddle_events SET outcome = ? WHERE event_id = ?').run(outcome, eventId)
      billing.audit?.append({
        kind: 'webhook',
        actor: 'billing',
        outcome: alarm ? 'alarm' : outcome.startsWith('error') ? 'error' : 'ok',
        reason: 'replayed',
        data: {
          event_id: eventId,
          event_type: row.event_type,
          before: row.outcome,
          after: outcome,
        },
        at: billing.clock.now() * 1000,
      })
      const { payload: _payload, ...rest } = row
      return { ...rest, outcome, before: row.outcome }
    })
    .immediate()
}
