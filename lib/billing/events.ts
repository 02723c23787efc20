// One event from Paddle, recorded and applied once: the path a verified webhook delivery
// (webhooks.ts) and an event read from Paddle's event stream by reconcile (reconcile.ts)
// share. A known event_id is a duplicate that changes nothing; otherwise the snapshot is
// applied by the webhook rules (snapshots.ts through the sink: order by occurred_at,
// parks), the event stored in paddle_events with its outcome, payload and source, and
// audited, in one transaction. It needs only an EventSink (Billing is one), so neither
// path imports the facade.
import { claError } from '../errors.js'
import type { Clock } from '../clock.js'
import type { Db } from '../db/open.js'
import type { AuditKind } from '../audit/kinds.js'
import { isRfc3339 } from './rfc3339.js'
import { ENTITIES, type EntitySpec, type PaddleObj } from './entities.js'
import type { ParkedSnapshot } from './snapshots.js'

/** Where billing writes its audit events (an AuditLog, or any object with the same append). */
export interface AuditSink {
  /** Appends one audit event; `at` in µs since the Unix epoch (default now). */
  append(ev: {
    kind: AuditKind
    actor: string
    outcome: string
    reason?: string
    data?: unknown
    route?: string
    at?: number
  }): unknown
}

/** What recording an event needs: Billing is one. */
export interface EventSink {
  readonly db: Db
  readonly clock: Clock
  /** Where each event is audited; none: it is not. */
  readonly audit?: AuditSink | undefined
  /** Applies a snapshot to our row (snapshots.ts); call inside a transaction. */
  applySnapshot(
    spec: EntitySpec,
    obj: PaddleObj,
    occurredAt: string,
  ): 'applied' | 'linked' | 'stale' | 'inserted' | ParkedSnapshot
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
  billing: EventSink,
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
export function applyEvent(
  billing: EventSink,
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
