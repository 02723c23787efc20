// The subscription's life, led by us (docs/billing.md "The subscription's life"): cancel
// (now or at the period's end), pause, resume, change its items/quantities (with a
// proration mode), set or remove its discount. Each is
//   1. decided here against our row (a canceled subscription takes nothing; a pause of a
//      paused one is refused…) and written to our row FIRST, in one transaction with its
//      audit event: the status or scheduled change we decided, the new items (so the
//      limits follow at once, entitlements.ts), and `pending_change` = the action itself;
//   2. pushed by the one dual-write mechanism (push.ts → the subscriptions description's
//      pushChange hook → `sendChange` below): Paddle's subscription is read first, and the
//      action is sent only when Paddle does not show it yet, so a retry after a lost
//      answer never sends it twice; Paddle's answer is then merged and pending_change
//      cleared;
//   3. while pending_change is set, a webhook cannot undo what we decided
//      (`HELD_WHILE_CHANGING`); the webhooks that follow the push then agree with us.
import { Type, type Static } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { appendEvent } from '../audit/log.js'
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import type { MapCtx, PaddleObj, PushCtx, Row } from './entity-spec.js'
import type { PaddleClient } from './paddle-client.js'
import { Id, schemaErrors, strict } from './schemas.js'

const EffectiveFrom = Type.Union([Type.Literal('immediately'), Type.Literal('next_billing_period')])
const Rfc3339 = Type.String({
  pattern: '^\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?(Z|[+-]\\d{2}:\\d{2})$',
  description: 'must be an RFC 3339 date-time, e.g. "2027-01-01T00:00:00Z"',
})
export const PRORATION_MODES = [
  'prorated_immediately',
  'prorated_next_billing_period',
  'full_immediately',
  'full_next_billing_period',
  'do_not_bill',
] as const

/** The schema of a subscription action (TypeBox), one variant per `action`. */
export const SubscriptionAction = Type.Union([
  Type.Object({ action: Type.Literal('cancel'), effective_from: EffectiveFrom }, strict),
  Type.Object(
    {
      action: Type.Literal('pause'),
      effective_from: EffectiveFrom,
      resume_at: Type.Optional(Rfc3339),
    },
    strict,
  ),
  // a paused subscription resumes now; an active one drops its scheduled pause or cancel
  Type.Object({ action: Type.Literal('resume') }, strict),
  Type.Object(
    {
      action: Type.Literal('change_items'),
      items: Type.Array(
        Type.Object(
          { price_id: Id, quantity: Type.Integer({ minimum: 1, maximum: 10000 }) },
          strict,
        ),
        { minItems: 1, maxItems: 100 },
      ),
      proration_billing_mode: Type.Union(PRORATION_MODES.map((m) => Type.Literal(m))),
    },
    strict,
  ),
  Type.Object(
    {
      action: Type.Literal('set_discount'),
      discount_id: Type.Union([Id, Type.Null()]),
      effective_from: EffectiveFrom,
    },
    strict,
  ),
])
/**
 * A change to a subscription: cancel, pause, resume, change_items or set_discount, each
 * with its own fields (docs/billing.md).
 */
export type SubscriptionAction = Static<typeof SubscriptionAction>

/** Columns a webhook does not change while one of our actions waits for Paddle. */
export const HELD_WHILE_CHANGING = [
  'status',
  'scheduled_change',
  'paused_at',
  'canceled_at',
  'discount_id',
] as const

export function parseAction(input: unknown): SubscriptionAction {
  if (Value.Check(SubscriptionAction, input)) return structuredClone(input)
  const action = (input as { action?: unknown } | null)?.action
  const known = ['cancel', 'pause', 'resume', 'change_items', 'set_discount']
  if (typeof action !== 'string' || !known.includes(action)) {
    throw claError('CLA_ERR_INVALID_INPUT', `action must be one of ${known.join(', ')}`, {
      details: { field: 'action' },
    })
  }
  const variant = SubscriptionAction.anyOf.find(
    (v) => (v.properties.action as { const: string }).const === action,
  )!
  const errors = schemaErrors(variant, input)
  const first = errors[0]
  throw claError(
    'CLA_ERR_INVALID_INPUT',
    `subscription ${action}: ${first ? `${first.path} ${first.message}` : 'invalid'}`,
    { details: { field: first?.path ?? '/', errors } },
  )
}

/** What deciding an action writes to our row (step 1). */
export interface Decision {
  cols: Record<string, unknown>
  /** The new items (change_items), in the order given. */
  items?: Array<{ price_id: string; quantity: number; recurring: number }>
}

function conflict(message: string, details: Record<string, unknown> = {}): never {
  throw claError('CLA_ERR_BILLING_CONFLICT', message, { details })
}

function scheduled(row: Row): { action?: string } | null {
  const v = row.scheduled_change
  if (v == null) return null
  return (typeof v === 'string' ? JSON.parse(v) : v) as { action?: string }
}

/**
 * Step 1: checks the action against our row and says what to write. Throws
 * CLA_ERR_BILLING_CONFLICT for an action the subscription's state does not take, and
 * CLA_ERR_NOT_FOUND / CLA_ERR_INVALID_INPUT for a price or discount that cannot be used.
 */
export function decide(db: Db, row: Row, a: SubscriptionAction, nowIso: string): Decision {
  const status = String(row.status)
  const id = row.id
  if (status === 'canceled') conflict(`subscription ${id} is canceled; it takes no more changes`)
  if (row.pending_change != null) {
    const earlier = JSON.parse(String(row.pending_change)) as { action: string }
    conflict(
      `subscription ${id} has a ${earlier.action} not confirmed by Paddle yet${row.failed_at != null ? ' (failed: see last_error; clavitor billing subscription discard ' + id + ' restores Paddle\u2019s state)' : ''}; wait for it or retry it first`,
      { pending: earlier.action },
    )
  }
  const periodEnd = (row.current_period_ends_at ?? row.next_billed_at ?? null) as string | null
  const sc = scheduled(row)
  switch (a.action) {
    case 'cancel':
      if (a.effective_from === 'immediately')
        return { cols: { status: 'canceled', canceled_at: nowIso, scheduled_change: null } }
      if (sc?.action === 'cancel') conflict(`subscription ${id} is already set to cancel`)
      return {
        cols: {
          scheduled_change: JSON.stringify({
            action: 'cancel',
            effective_at: periodEnd,
            resume_at: null,
          }),
        },
      }
    case 'pause':
      if (status === 'paused') conflict(`subscription ${id} is paused already`)
      if (a.effective_from === 'immediately')
        return {
          cols: {
            status: 'paused',
            paused_at: nowIso,
            scheduled_change: a.resume_at
              ? JSON.stringify({ action: 'resume', effective_at: a.resume_at, resume_at: null })
              : null,
          },
        }
      if (sc?.action === 'pause') conflict(`subscription ${id} is already set to pause`)
      return {
        cols: {
          scheduled_change: JSON.stringify({
            action: 'pause',
            effective_at: periodEnd,
            resume_at: a.resume_at ?? null,
          }),
        },
      }
    case 'resume':
      if (status !== 'paused' && !sc)
        conflict(`subscription ${id} is ${status} with nothing scheduled: nothing to resume`)
      return {
        cols: {
          status: status === 'paused' ? 'active' : status,
          paused_at: null,
          scheduled_change: null,
        },
      }
    case 'change_items': {
      const items = a.items.map((it) => {
        const p = db
          .prepare('SELECT id, currency_code, billing_interval, status FROM prices WHERE id = ?')
          .get(it.price_id) as
          | { id: string; currency_code: string; billing_interval: string | null; status: string }
          | undefined
        if (!p)
          throw claError('CLA_ERR_NOT_FOUND', `price ${it.price_id} does not exist`, {
            details: { field: 'items', price: it.price_id },
          })
        if (p.currency_code !== row.currency_code)
          throw claError(
            'CLA_ERR_INVALID_INPUT',
            `price ${it.price_id} is in ${p.currency_code}; the subscription bills in ${String(row.currency_code)}`,
            { details: { field: 'items', price: it.price_id } },
          )
        return { price_id: p.id, quantity: it.quantity, recurring: p.billing_interval ? 1 : 0 }
      })
      if (new Set(items.map((i) => i.price_id)).size !== items.length)
        throw claError('CLA_ERR_INVALID_INPUT', 'items: each price at most once', {
          details: { field: 'items' },
        })
      if (!items.some((i) => i.recurring))
        throw claError('CLA_ERR_INVALID_INPUT', 'items: a subscription needs a recurring price', {
          details: { field: 'items' },
        })
      return { cols: {}, items }
    }
    case 'set_discount': {
      if (a.discount_id !== null) {
        const d = db.prepare('SELECT status FROM discounts WHERE id = ?').get(a.discount_id) as
          { status: string } | undefined
        if (!d)
          throw claError('CLA_ERR_NOT_FOUND', `discount ${a.discount_id} does not exist`, {
            details: { field: 'discount_id' },
          })
        if (d.status !== 'active')
          throw claError('CLA_ERR_INVALID_INPUT', `discount ${a.discount_id} is ${d.status}`, {
            details: { field: 'discount_id' },
          })
      }
      return { cols: { discount_id: a.discount_id } }
    }
  }
}

/** Does Paddle's subscription already show the action (an earlier attempt reached it)? */
export function shownAtPaddle(a: SubscriptionAction, o: PaddleObj, map: MapCtx): boolean {
  const sc = (o.scheduled_change ?? null) as { action?: string } | null
  switch (a.action) {
    case 'cancel':
      return (
        o.status === 'canceled' || (a.effective_from !== 'immediately' && sc?.action === 'cancel')
      )
    case 'pause':
      return o.status === 'paused' || (a.effective_from !== 'immediately' && sc?.action === 'pause')
    case 'resume':
      return o.status !== 'paused' && (sc === null || sc.action === 'resume')
    case 'change_items': {
      const want = new Map(a.items.map((i) => [map.paddleIdOf('prices', i.price_id), i.quantity]))
      const have = ((o.items ?? []) as Array<Record<string, unknown>>).filter(
        (i) => i.status !== 'inactive',
      )
      return (
        have.length === want.size &&
        have.every((i) => want.get(String((i.price as { id?: string })?.id)) === Number(i.quantity))
      )
    }
    case 'set_discount': {
      const d = (o.discount ?? null) as { id?: string } | null
      const want = a.discount_id === null ? null : map.paddleIdOf('discounts', a.discount_id)
      return (d?.id ?? null) === want
    }
  }
}

/** Paddle's endpoint and body for an action. */
function request(
  a: SubscriptionAction,
  pid: string,
  o: PaddleObj,
  map: MapCtx,
): { method: 'post' | 'patch'; path: string; body: Record<string, unknown> } {
  const base = `/subscriptions/${pid}`
  switch (a.action) {
    case 'cancel':
      return { method: 'post', path: `${base}/cancel`, body: { effective_from: a.effective_from } }
    case 'pause':
      return {
        method: 'post',
        path: `${base}/pause`,
        body: {
          effective_from: a.effective_from,
          ...(a.resume_at ? { resume_at: a.resume_at } : {}),
        },
      }
    case 'resume':
      // paused: resume now; active with a scheduled pause or cancel: drop the schedule
      return o.status === 'paused'
        ? { method: 'post', path: `${base}/resume`, body: { effective_from: 'immediately' } }
        : { method: 'patch', path: base, body: { scheduled_change: null } }
    case 'change_items':
      return {
        method: 'patch',
        path: base,
        body: {
          items: a.items.map((i) => ({
            price_id: map.paddleIdOf('prices', i.price_id),
            quantity: i.quantity,
          })),
          proration_billing_mode: a.proration_billing_mode,
        },
      }
    case 'set_discount':
      return {
        method: 'patch',
        path: base,
        body: {
          discount:
            a.discount_id === null
              ? null
              : {
                  id: map.paddleIdOf('discounts', a.discount_id),
                  effective_from: a.effective_from,
                },
        },
      }
  }
}

/**
 * Step 2, for the pushChange hook: reads Paddle's subscription, sends the action unless
 * Paddle shows it already, clears pending_change (only if no newer action replaced it) and
 * returns Paddle's subscription for the push to merge. Undefined when no action waits.
 */
export async function sendChange(p: PushCtx, row: Row): Promise<PaddleObj | undefined> {
  if (row.pending_change == null || !row.paddle_id) return undefined
  const pending = String(row.pending_change)
  const a = JSON.parse(pending) as SubscriptionAction
  const path = `/subscriptions/${String(row.paddle_id)}`
  let o = (await p.paddle.get<PaddleObj>(path)).data
  if (!shownAtPaddle(a, o, p.map)) {
    const r = request(a, String(row.paddle_id), o, p.map)
    o = (
      r.method === 'post'
        ? await p.paddle.post<PaddleObj>(r.path, r.body)
        : await p.paddle.patch<PaddleObj>(r.path, r.body)
    ).data
  }
  p.map.db
    .prepare('UPDATE subscriptions SET pending_change = NULL WHERE id = ? AND pending_change = ?')
    .run(row.id, pending)
  return o
}

/**
 * Step 1's write: our row first, in one transaction with the audit event. The row is
 * then pending (pushed at once by the caller, retried like every dual write).
 */
export function writeChange(
  db: Db,
  row: Row,
  a: SubscriptionAction,
  opts: { nowUs: number; actor: string },
): void {
  const d = decide(db, row, a, new Date(Math.floor(opts.nowUs / 1000)).toISOString())
  const set: Record<string, unknown> = {
    ...d.cols,
    pending_change: JSON.stringify(a),
    pending_since: opts.nowUs,
    attempts: 0,
    last_error: null,
    failed_at: null,
    next_attempt_at: null,
    updated_at: opts.nowUs,
  }
  db.prepare(
    `UPDATE subscriptions SET ${Object.keys(set)
      .map((k) => `${k} = @${k}`)
      .join(', ')} WHERE id = @__id`,
  ).run({ ...set, __id: row.id })
  if (d.items) {
    db.prepare('DELETE FROM subscription_items WHERE subscription_id = ?').run(row.id)
    const ins = db.prepare(
      'INSERT INTO subscription_items (subscription_id, price_id, quantity, recurring) VALUES (?, ?, ?, ?)',
    )
    for (const it of d.items) ins.run(row.id, it.price_id, it.quantity, it.recurring)
  }
  appendEvent(db, {
    kind: 'subscription.change',
    actor: opts.actor,
    outcome: 'ok',
    data: { subscription: row.id, paddle_id: row.paddle_id ?? null, ...a },
  })
}

/**
 * Gives up an action Paddle refused (or that waits for good): clears pending_change,
 * audited, and returns Paddle's subscription as it is, for the caller to merge in full
 * (status, schedule, items; the discount is taken here). Needs the subscription to be at
 * Paddle: without a Paddle id there is no state to return to.
 */
export async function discardChange(
  paddle: PaddleClient,
  map: MapCtx,
  row: Row,
  actor: string,
): Promise<PaddleObj> {
  if (row.pending_change == null)
    throw claError('CLA_ERR_INVALID_INPUT', `subscription ${row.id} has no change waiting`)
  if (!row.paddle_id)
    throw claError(
      'CLA_ERR_BILLING_DEPENDENCY_PENDING',
      `subscription ${row.id} is not at Paddle yet; there is no Paddle state to return to`,
    )
  const o = (await paddle.get<PaddleObj>(`/subscriptions/${String(row.paddle_id)}`)).data
  const pending = String(row.pending_change)
  map.db.transaction(() => {
    map.db
      .prepare(
        'UPDATE subscriptions SET pending_change = NULL, discount_id = ? WHERE id = ? AND pending_change = ?',
      )
      .run(
        map.ourIdOf('discounts', (o.discount as { id?: string } | null)?.id ?? null),
        row.id,
        pending,
      )
    appendEvent(map.db, {
      kind: 'subscription.change',
      actor,
      outcome: 'discarded',
      data: { subscription: row.id, discarded: JSON.parse(pending) as unknown },
    })
  })()
  return o
}
