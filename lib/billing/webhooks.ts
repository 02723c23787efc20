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
import { ENTITIES, type EntitySpec, type PaddleObj } from './entities.js'

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

export interface WebhookResult {
  /** HTTP status to answer (200 for everything accepted, duplicates included). */
  status: 200
  event_id: string
  event_type: string
  /**
   * applied | linked | inserted | stale | duplicate | stored (unknown type) | error: … (kept,
   * not applied) | parked: <reason> (kept, not applied, alarm)
   */
  outcome: string
  /** Set when the event was parked: what is wrong, for a loud log line beside the audit row. */
  alarm?: string
}

/** The reason an event is parked for: a signed envelope whose occurred_at is no RFC 3339 time. */
export const PARKED_OCCURRED_AT = 'occurred_at_invalid'

const EVENT_ENTITIES: Record<string, EntitySpec> = Object.fromEntries(
  Object.values(ENTITIES).map((s) => [s.eventName, s]),
)

/** The entity an event type is about (`customer.updated` → customers), or undefined for a type we do not mirror. */
export function eventEntity(eventType: string): EntitySpec | undefined {
  const name = eventType.split('.')[0] ?? ''
  return Object.hasOwn(EVENT_ENTITIES, name) ? EVENT_ENTITIES[name] : undefined
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

/** A Paddle event as a webhook delivers it or `GET /events` lists it (fields unchecked). */
export interface PaddleEvent {
  event_id?: unknown
  event_type?: unknown
  occurred_at?: unknown
  notification_id?: unknown
  data?: unknown
}

/** Where a stored event came from: a signed delivery, or Paddle's event stream (reconcile). */
export type EventSource = 'webhook' | 'events'

/**
 * Records and applies one event from Paddle, once: the path a verified webhook delivery
 * and an event read from `GET /events` (reconcile) share. A known `event_id` is a
 * `duplicate` that changes nothing; otherwise the snapshot is applied by the webhook rules
 * (order by occurred_at, parks), the event stored in `paddle_events` with its outcome,
 * `payload` and `source`, and audited, all in one transaction (a savepoint inside the
 * caller's, when there is one). CLA_ERR_INVALID_INPUT for a body without event_id or
 * event_type.
 */
export function recordEvent(
  billing: Billing,
  ev: PaddleEvent,
  payload: string,
  source: EventSource,
): WebhookResult {
  if (typeof ev?.event_id !== 'string' || typeof ev.event_type !== 'string') {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      `${source === 'webhook' ? 'webhook body' : 'event'} lacks event_id or event_type`,
    )
  }
  const eventId = ev.event_id
  const eventType = ev.event_type
  // Order rests on occurred_at: without a real timestamp the event cannot be placed (a
  // NaN compares as neither older nor newer), so it is parked, never applied.
  const timed = isRfc3339(ev.occurred_at)
  const occurredAt =
    typeof ev.occurred_at === 'string' ? ev.occurred_at : JSON.stringify(ev.occurred_at ?? null)
  const db = billing.db
  const run = db.transaction((): WebhookResult => {
    const seen = db.prepare('SELECT outcome FROM paddle_events WHERE event_id = ?').get(eventId)
    if (seen) return { status: 200, event_id: eventId, event_type: eventType, outcome: 'duplicate' }
    const data = ev.data as PaddleObj | undefined
    const { outcome, alarm } = applyEvent(
      billing,
      eventType,
      eventId,
      data,
      timed ? occurredAt : null,
      occurredAt,
    )
    db.prepare(
      `INSERT INTO paddle_events (event_id, event_type, occurred_at, notification_id, received_at, outcome, payload, source)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      eventId,
      eventType,
      occurredAt,
      typeof ev.notification_id === 'string' ? ev.notification_id : null,
      billing.clock.now() * 1000,
      outcome,
      payload,
      source,
    )
    const failed = outcome.startsWith('error')
    billing.audit?.append({
      kind: 'webhook',
      actor: 'paddle',
      outcome: alarm ? 'alarm' : failed ? 'error' : 'ok',
      reason: alarm ? 'parked' : failed ? 'error' : outcome,
      route: source === 'webhook' ? 'POST /webhooks/paddle' : 'GET /events',
      data: {
        event_id: eventId,
        event_type: eventType,
        occurred_at: occurredAt.slice(0, 200),
        entity_id: typeof data?.id === 'string' ? data.id : null,
        ...(failed ? { error: outcome } : {}),
        ...(alarm ? { parked: outcome.slice('parked: '.length), message: alarm } : {}),
      },
      at: billing.clock.now() * 1000,
    })
    return {
      status: 200,
      event_id: eventId,
      event_type: eventType,
      outcome,
      ...(alarm ? { alarm } : {}),
    }
  })
  // inside a caller's transaction (reconcile's events pass) this is a savepoint
  return db.inTransaction ? run() : run.immediate()
}

/**
 * Applies one verified event's snapshot (inside the caller's transaction): its outcome
 * (`applied`, `linked`, `stale`, `inserted`, `stored` for a type we do not mirror,
 * `parked: <reason>` with an alarm, or `error: <message>` for a snapshot that could not be
 * applied). Shared by deliveries and replays.
 */
function applyEvent(
  billing: Billing,
  eventType: string,
  eventId: string,
  rawData: unknown,
  timedAt: string | null,
  occurredAt: string,
): { outcome: string; alarm?: string } {
  const db = billing.db
  const spec = EVENT_ENTITIES[eventType.split('.')[0] ?? '']
  const data = rawData as PaddleObj | undefined
  if (timedAt === null) {
    return {
      outcome: `parked: ${PARKED_OCCURRED_AT}`,
      alarm: `${eventType} ${eventId}: occurred_at ${occurredAt.slice(0, 80)} is not an RFC 3339 timestamp; parked, not applied`,
    }
  }
  if (
    !spec ||
    !data ||
    typeof data !== 'object' ||
    typeof data.id !== 'string' ||
    !data.id.startsWith(`${spec.paddlePrefix}_`)
  )
    return { outcome: 'stored' }
  // A snapshot we cannot apply (a shape we do not expect) is kept with its error and
  // acknowledged: answering 5xx would make Paddle retry a delivery that cannot succeed;
  // `billing events replay` applies it again after a fix.
  try {
    const r = db.transaction(() => billing.applySnapshot(spec, data, timedAt))()
    if (typeof r === 'string') return { outcome: r }
    return {
      outcome: `parked: ${r.parked}`,
      alarm: `${eventType} ${eventId}: ${r.message}; parked, not applied`,
    }
  } catch (err) {
    return { outcome: `error: ${(err as Error)?.message ?? String(err)}`.slice(0, 500) }
  }
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
