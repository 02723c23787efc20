// Converge with Paddle, whatever happened (docs/billing.md "Reconcile"): a missed webhook,
// an object made or changed in Paddle's dashboard. Pages through Paddle's list endpoints,
// parents before children (customers, then their addresses and businesses, products,
// prices, discounts, subscriptions, transactions, adjustments), and applies each object
// as the snapshot it is, through the same rule as a webhook (snapshots.ts): linked to our
// row, applied when newer than what the row last took (Paddle's `updated_at` stands for the
// event time, so a reconcile never rolls a row back), inserted as a mirror when unknown,
// parked when it breaks a rule. Because parents come first, a child whose parent was
// missing finds it mirrored by then instead of failing.
//
// Before the lists, Paddle's event stream: `GET /events` after the stored cursor (table
// paddle_event_cursor), each event recorded and applied through the webhook path
// (events.ts recordEvent: a known event_id is a duplicate, order by occurred_at, parks)
// and the cursor moved to it in the same transaction, so the cursor never passes an event
// that was not applied. The stream catches what a missed webhook carried at the cost of
// the events since the last pass; the lists stay as the repair pass (an event older than
// Paddle's 90 days, or one that became visible after the cursor passed its id).
//
// Our own pending rows keep what we decided (a snapshot only takes Paddle-owned columns of
// a pending row, and nothing an action of ours holds), so reconcile and the dual write
// never fight. `dryRun` runs it all inside one transaction that is rolled back: the report
// says what would change.
import { claError } from '../errors.js'
import type { Db } from '../db/open.js'
import type { BillingContext } from './context.js'
import {
  ENTITIES,
  entityForPaddleId,
  type EntityName,
  type EntitySpec,
  type PaddleObj,
} from './entities.js'
import { applySnapshot, type ParkedSnapshot } from './snapshots.js'
import { eventEntity, recordEvent, type EventSink, type PaddleEvent } from './events.js'

/** The order of a pass: a parent is always mirrored before its children. */
export const RECONCILE_ORDER = [
  'customers',
  'addresses',
  'businesses',
  'products',
  'prices',
  'discounts',
  'subscriptions',
  'transactions',
  'adjustments',
] as const satisfies readonly EntityName[]

/** `status=` so the lists show every object, not only active ones (Paddle's default). */
const ALL_STATUSES: Partial<Record<EntityName, string>> = {
  customers: 'active,archived',
  addresses: 'active,archived',
  businesses: 'active,archived',
  products: 'active,archived',
  prices: 'active,archived',
  discounts: 'active,archived,expired,used',
  subscriptions: 'active,canceled,past_due,paused,trialing',
}

/** Per entity, what a reconcile run did with each object Paddle listed. */
export interface ReconcileCounts {
  /** Objects Paddle listed. */
  seen: number
  /** Unknown here: mirrored. */
  inserted: number
  /** Newer at Paddle than our row: our row repaired. */
  applied: number
  /** Our row had no Paddle id yet (its create's answer was lost): linked. */
  linked: number
  /** Our row already had this (or newer). */
  unchanged: number
  /** Broke a rule (webhooks' parks): left alone, listed in `parked`. */
  parked: number
}

/** What the events pass (Paddle's `GET /events` after our cursor) found and did. */
export interface EventsPassReport {
  /** The cursor the pass started after (null: none stored yet, the whole stream). */
  after: string | null
  /** The cursor stored at the end: the last event applied (unchanged when none came). */
  cursor: string | null
  /** Events read. */
  seen: number
  /** Mirrored (unknown here). */
  inserted: number
  /** Changed our row. */
  applied: number
  /** Linked a row of ours to its Paddle object. */
  linked: number
  /** Older than what the row had, or no difference. */
  unchanged: number
  /** Already stored (delivered as a webhook, or read by an earlier pass): nothing done. */
  duplicate: number
  /** A type we do not mirror: stored only. */
  stored: number
  /** Broke a rule or could not be applied: stored with the reason, listed in `parked`. */
  parked: number
}

/** What a reconcile run (list everything at Paddle, repair our mirror) found and did. */
export interface ReconcileReport {
  /** True when nothing was written (only reported). */
  dry_run: boolean
  /**
   * The events pass, read before the lists; null when the run did not read the stream
   * (limited to some entities: the cursor is moved only by a whole pass).
   */
  events: EventsPassReport | null
  /** Counts per entity (the lists). */
  entities: Record<string, ReconcileCounts>
  /** What changed, one line per object: [entity, Paddle id, outcome]. */
  changes: Array<[string, string, 'inserted' | 'applied' | 'linked']>
  /** Objects left alone because they broke a rule, with why. */
  parked: Array<{ entity: string; paddle_id: string; reason: string; message: string }>
}

class Rollback extends Error {}

/** The stored cursor of Paddle's event stream: the last event a reconcile pass applied. */
export interface EventCursor {
  /** evt_…: the next pass reads the events after it. */
  event_id: string
  /** That event's occurred_at. */
  occurred_at: string
  /** µs epoch when it was stored. */
  updated_at: number
}

/** The event stream's cursor, or null before the first pass. */
export function eventCursor(db: Db): EventCursor | null {
  return (
    (db
      .prepare('SELECT event_id, occurred_at, updated_at FROM paddle_event_cursor WHERE id = 1')
      .get() as EventCursor | undefined) ?? null
  )
}

function zeroEvents(after: string | null): EventsPassReport {
  return {
    after,
    cursor: after,
    seen: 0,
    inserted: 0,
    applied: 0,
    linked: 0,
    unchanged: 0,
    duplicate: 0,
    stored: 0,
    parked: 0,
  }
}

/**
 * Records and applies one event of the stream (events.ts recordEvent, source `events`)
 * and moves the cursor to it, in one transaction: the cursor never passes an event that
 * was not applied. Counts it in `report`.
 */
function applyStreamEvent(
  ctx: BillingContext,
  billing: EventSink,
  ev: PaddleEvent,
  report: ReconcileReport,
  counts: EventsPassReport,
): void {
  const type = typeof ev.event_type === 'string' ? ev.event_type : ''
  const spec = eventEntity(type)
  const data = ev.data as PaddleObj | null | undefined
  const pid = spec && data && typeof data.id === 'string' ? data.id : undefined
  ctx.db.transaction(() => {
    const before = spec && pid ? view(ctx, spec, pid) : undefined
    const r = recordEvent(billing, ev, JSON.stringify(ev), 'events')
    ctx.db
      .prepare(
        `INSERT INTO paddle_event_cursor (id, event_id, occurred_at, updated_at) VALUES (1, @e, @o, @u)
         ON CONFLICT (id) DO UPDATE SET event_id = @e, occurred_at = @o, updated_at = @u`,
      )
      .run({
        e: r.event_id,
        o: typeof ev.occurred_at === 'string' ? ev.occurred_at : '',
        u: ctx.clock.now() * 1000,
      })
    counts.seen++
    counts.cursor = r.event_id
    const o = r.outcome
    if (o === 'duplicate' || o === 'stored') counts[o]++
    else if (o === 'stale') counts.unchanged++
    else if (o === 'applied' && spec && pid && view(ctx, spec, pid) === before) counts.unchanged++
    else if ((o === 'applied' || o === 'inserted' || o === 'linked') && spec && pid) {
      counts[o]++
      report.changes.push([spec.name, pid, o])
    } else {
      // parked: <reason>, or error: <message> (a snapshot that could not be applied)
      counts.parked++
      const parked = o.startsWith('parked: ')
      report.parked.push({
        entity: spec?.name ?? type,
        paddle_id: pid ?? '',
        reason: parked ? o.slice('parked: '.length) : 'error',
        message: `event ${r.event_id} (${type}): ${r.alarm ?? o}`,
      })
    }
  })()
}

/**
 * Applies one listed object as a snapshot. Paddle's updated_at stands for the event time,
 * so it is applied only when newer than what the row took; a row that took it without a
 * difference (it had no event time yet) counts as unchanged: a report lists only repairs.
 */
function applyObject(
  ctx: BillingContext,
  spec: EntitySpec,
  o: PaddleObj,
): 'unchanged' | 'inserted' | 'applied' | 'linked' | ParkedSnapshot {
  const at = typeof o.updated_at === 'string' ? o.updated_at : String(o.created_at)
  const before = view(ctx, spec, o.id)
  const r = ctx.db.transaction(() => applySnapshot(ctx, spec, o, at))()
  if (r === 'stale' || (r === 'applied' && view(ctx, spec, o.id) === before)) return 'unchanged'
  return r
}

/** What a row shows (its children included), without the bookkeeping a snapshot always moves. */
function view(ctx: BillingContext, spec: EntitySpec, paddleId: string): string | undefined {
  const row = ctx.db.prepare(`SELECT * FROM ${spec.table} WHERE paddle_id = ?`).get(paddleId) as
    (Record<string, unknown> & { id: string }) | undefined
  if (!row) return undefined
  const { raw: _raw, paddle_occurred_at: _at, updated_at: _u, ...rest } = row
  return JSON.stringify({ ...rest, ...spec.present?.(ctx.db, row) })
}

function zero(): ReconcileCounts {
  return { seen: 0, inserted: 0, applied: 0, linked: 0, unchanged: 0, parked: 0 }
}

/** Where Paddle lists an entity: top-level, or under each customer (addresses, businesses). */
function listPaths(ctx: BillingContext, spec: EntitySpec): string[] {
  if (spec.name === 'addresses' || spec.name === 'businesses') {
    const ids = ctx.db
      .prepare('SELECT paddle_id FROM customers WHERE paddle_id IS NOT NULL ORDER BY id')
      .pluck()
      .all() as string[]
    return ids.map((c) => `/customers/${c}/${spec.name}`)
  }
  return [`/${spec.name}`]
}

/**
 * One pass over Paddle (everything, or the entities named). Paddle must be configured.
 * A real pass lists one entity, applies what it listed (one small transaction per
 * object: the write lock is never held while waiting for Paddle), then lists the next, so
 * a parent is mirrored before its children are listed (addresses and businesses are
 * listed per customer). A dry run lists everything first (addresses and businesses of the
 * customers known before the pass), then applies it all in one transaction rolled back.
 */
export async function reconcile(
  ctx: BillingContext,
  opts: { dryRun?: boolean; entities?: readonly EntityName[] } = {},
  billing?: EventSink,
): Promise<ReconcileReport> {
  const paddle = ctx.paddle!
  const wanted = RECONCILE_ORDER.filter((n) => !opts.entities || opts.entities.includes(n))
  // the stream only on a whole pass: a pass limited to some entities must not move the
  // cursor past events of the others
  const stream = billing && !opts.entities
  const after = stream ? (eventCursor(ctx.db)?.event_id ?? null) : null
  const report: ReconcileReport = {
    dry_run: Boolean(opts.dryRun),
    events: stream ? zeroEvents(after) : null,
    entities: {},
    changes: [],
    parked: [],
  }
  const eventPages = () =>
    paddle.pages('/events', {
      order_by: 'id[ASC]',
      per_page: '200',
      ...(after ? { after } : {}),
    }) as AsyncGenerator<PaddleEvent[]>
  const list = async (spec: EntitySpec): Promise<PaddleObj[]> => {
    const status = ALL_STATUSES[spec.name]
    const objs: PaddleObj[] = []
    for (const path of listPaths(ctx, spec)) {
      for await (const page of paddle.pages(path, {
        per_page: String(spec.perPage),
        ...(status ? { status } : {}),
      }))
        objs.push(...(page as PaddleObj[]))
    }
    return objs
  }
  const applyAll = (spec: EntitySpec, objs: PaddleObj[]): void => {
    const counts = (report.entities[spec.name] ??= zero())
    for (const o of objs) {
      counts.seen++
      const r = applyObject(ctx, spec, o)
      if (r === 'unchanged') counts.unchanged++
      else if (typeof r === 'string') {
        counts[r]++
        report.changes.push([spec.name, o.id, r])
      } else {
        counts.parked++
        report.parked.push({
          entity: spec.name,
          paddle_id: o.id,
          reason: r.parked,
          message: r.message,
        })
      }
    }
  }
  if (!opts.dryRun) {
    // each event applied (and the cursor moved) as its page arrives: a page that fails
    // leaves the cursor at the last event applied, and the next pass goes on from there
    if (stream)
      for await (const page of eventPages())
        for (const ev of page) applyStreamEvent(ctx, billing, ev, report, report.events!)
    for (const name of wanted) applyAll(ENTITIES[name], await list(ENTITIES[name]))
    return report
  }
  const events: PaddleEvent[] = []
  if (stream) for await (const page of eventPages()) events.push(...page)
  const fetched: Array<[EntitySpec, PaddleObj[]]> = []
  for (const name of wanted) fetched.push([ENTITIES[name], await list(ENTITIES[name])])
  try {
    ctx.db.transaction(() => {
      if (stream)
        for (const ev of events) applyStreamEvent(ctx, billing, ev, report, report.events!)
      for (const [spec, objs] of fetched) applyAll(spec, objs)
      throw new Rollback()
    })()
  } catch (err) {
    if (!(err instanceof Rollback)) throw err
  }
  return report
}

/**
 * Re-syncs one object by its Paddle id: read from Paddle and applied as a snapshot (the
 * same rule as a pass). Addresses and businesses are read under their customer, so one of
 * ours must name it (a mirror of the customer is enough).
 */
export async function resyncOne(
  ctx: BillingContext,
  paddleId: string,
): Promise<{ entity: EntityName; paddle_id: string; outcome: string; message?: string }> {
  const spec = entityForPaddleId(paddleId)
  if (!spec)
    throw claError('CLA_ERR_INVALID_INPUT', `${paddleId} is not a Paddle id we mirror`, {
      details: { paddle_id: paddleId },
    })
  let path = `/${spec.name}/${paddleId}`
  if (spec.name === 'addresses' || spec.name === 'businesses') {
    const owner = ctx.db
      .prepare(
        `SELECT c.paddle_id FROM ${spec.table} x JOIN customers c ON c.id = x.customer_id WHERE x.paddle_id = ?`,
      )
      .pluck()
      .get(paddleId) as string | null | undefined
    if (!owner)
      throw claError(
        'CLA_ERR_NOT_FOUND',
        `${paddleId} is not mirrored here, and Paddle lists ${spec.name} only under their customer: reconcile the customers first`,
        { details: { paddle_id: paddleId } },
      )
    path = `/customers/${owner}/${spec.name}/${paddleId}`
  }
  const o = (await ctx.paddle!.get<PaddleObj>(path)).data
  const r = applyObject(ctx, spec, o)
  return typeof r === 'string'
    ? { entity: spec.name, paddle_id: paddleId, outcome: r }
    : { entity: spec.name, paddle_id: paddleId, outcome: `parked: ${r.parked}`, message: r.message }
}
