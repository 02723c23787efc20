// Subscriptions: Paddle cannot create one directly, so ours is pushed as a billed
// manual-collection transaction and linked when Paddle's sub_ id appears (docs/billing.md
// "Subscriptions"). The description (see entity-spec.ts for what the fields mean).
import { Type } from '@sinclair/typebox'
import { claError } from '../errors.js'
import type { EntitySpec, PaddleObj, Row } from './entity-spec.js'
import { DEFAULT_BILLING_DETAILS, transactions } from './entities-sales.js'
import { newId } from './ids.js'
import {
  ACTIVE_AND_ARCHIVED,
  clean,
  customData,
  customerCustomData,
  customerFromPaddle,
  parseJson,
  userCustomData,
  str,
} from './mapping.js'
import { checkRefs, loadRow, mspDiscountFor } from './references.js'
import { HELD_WHILE_CHANGING, sendChange } from './subscription-lifecycle.js'
import { syncItemsFromPaddle } from './subscription-items.js'
import { BillingDetails, Currency, CustomData, Id, Item, strict } from './schemas.js'

export const subscriptions: EntitySpec = {
  name: 'subscriptions',
  table: 'subscriptions',
  prefix: 'sbs',
  paddlePrefix: 'sub',
  eventName: 'subscription',
  create: Type.Object(
    {
      customer_id: Id,
      address_id: Id,
      business_id: Type.Optional(Id),
      discount_id: Type.Optional(Id),
      vault_l0: Type.Optional(Type.String({ pattern: '^[0-9a-f]{8,128}$' })),
      currency_code: Currency,
      items: Type.Array(Item, { minItems: 1, maxItems: 100 }),
      billing_details: Type.Optional(BillingDetails),
      custom_data: Type.Optional(CustomData),
      // manual: an invoice (net terms), active at once; automatic: a card checkout, the
      // subscription exists once the customer has paid
      collection_mode: Type.Optional(
        Type.Union([Type.Literal('manual'), Type.Literal('automatic')]),
      ),
    },
    strict,
  ),
  update: Type.Object(
    {
      vault_l0: Type.Optional(Type.String({ pattern: '^[0-9a-f]{8,128}$' })),
      custom_data: Type.Optional(CustomData),
    },
    { ...strict, minProperties: 1 },
  ),
  json: ['custom_data', 'scheduled_change', 'pending_change'],
  bool: [],
  prepare(db, c, existing) {
    if (existing) return
    checkRefs(db, c)
    const items = parseJson(c.items) as Array<{ price_id: string }>
    const recurring = items.some(
      (it) =>
        (
          db.prepare('SELECT billing_interval FROM prices WHERE id = ?').get(it.price_id) as {
            billing_interval: string | null
          }
        ).billing_interval,
    )
    if (!recurring)
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        'items: a subscription needs at least one recurring price',
        { details: { field: 'items' } },
      )
    if (!c.discount_id) {
      const d = mspDiscountFor(db, String(c.customer_id))
      if (d) c.discount_id = d
    }
  },
  // Not created directly: pushed as a manual-collection transaction (insertNew, pushNew).
  collection: () => null,
  item: (_r, _c, pid) => `/subscriptions/${pid}`,
  toPaddle: (r, ctx) =>
    clean({ custom_data: customData(r, customerCustomData(ctx, r.customer_id)) }),
  fromPaddle: (o, ctx) => {
    const bc = (o.billing_cycle ?? null) as Record<string, unknown> | null
    const period = (o.current_billing_period ?? null) as Record<string, unknown> | null
    const disc = (o.discount ?? null) as Record<string, unknown> | null
    return {
      customer_id: customerFromPaddle(o, ctx),
      address_id: ctx.ourIdOf('addresses', str(o.address_id)),
      business_id: ctx.ourIdOf('businesses', str(o.business_id)),
      discount_id: disc ? ctx.ourIdOf('discounts', str(disc.id)) : null,
      status: str(o.status) ?? 'active',
      currency_code: str(o.currency_code) ?? 'USD',
      collection_mode: str(o.collection_mode) ?? 'automatic',
      billing_cycle_interval: bc ? str(bc.interval) : null,
      billing_cycle_frequency: bc ? Number(bc.frequency ?? 1) : null,
      current_period_starts_at: period ? str(period.starts_at) : null,
      current_period_ends_at: period ? str(period.ends_at) : null,
      next_billed_at: str(o.next_billed_at),
      started_at: str(o.started_at),
      first_billed_at: str(o.first_billed_at),
      paused_at: str(o.paused_at),
      canceled_at: str(o.canceled_at),
      scheduled_change: o.scheduled_change ? JSON.stringify(o.scheduled_change) : null,
      custom_data: userCustomData(o.custom_data),
    }
  },
  webhookFixed: ['customer_id'],
  mirrorNeeds: ['customer_id', 'currency_code'],
  paddleOwned: [
    'status',
    'billing_cycle_interval',
    'billing_cycle_frequency',
    'current_period_starts_at',
    'current_period_ends_at',
    'next_billed_at',
    'started_at',
    'first_billed_at',
    'paused_at',
    'canceled_at',
    'scheduled_change',
    'collection_mode',
  ],
  perPage: 200,
  findStatus: ACTIVE_AND_ARCHIVED,
  customerColumn: 'customer_id',
  present: (db, row) => ({
    checkout_url: checkoutUrl(db, row),
    items: db
      .prepare(
        'SELECT price_id, quantity, status, recurring FROM subscription_items WHERE subscription_id = ?',
      )
      .all(row.id),
  }),
  insertNew(w, id, cols, now) {
    // Ours: a subscription is pushed as a billed manual-collection transaction with
    // recurring prices; Paddle makes the subscription, linked when its sub_ id appears.
    const txnId = newId(transactions.prefix, w.nowMs())
    const items = JSON.stringify(cols.items)
    const card = cols.collection_mode === 'automatic'
    const billingDetails = card
      ? null
      : JSON.stringify(cols.billing_details ?? DEFAULT_BILLING_DETAILS)
    delete cols.items
    delete cols.billing_details
    w.insert(
      subscriptions,
      id,
      {
        ...cols,
        origin_transaction_id: txnId,
        collection_mode: card ? 'automatic' : 'manual',
        // ours until Paddle's first snapshot: a card subscription is not active before
        // the customer has paid at checkout (no vault may register on it meanwhile)
        ...(card ? { status: 'incomplete' } : {}),
      },
      now,
    )
    const ins = w.db.prepare(
      'INSERT INTO subscription_items (subscription_id, price_id, quantity, recurring) VALUES (?, ?, ?, ?)',
    )
    for (const it of JSON.parse(items) as Array<{ price_id: string; quantity?: number }>) {
      const p = w.db
        .prepare('SELECT billing_interval FROM prices WHERE id = ?')
        .get(it.price_id) as { billing_interval: string | null }
      ins.run(id, it.price_id, it.quantity ?? 1, p.billing_interval ? 1 : 0)
    }
    w.insert(
      transactions,
      txnId,
      {
        customer_id: cols.customer_id,
        address_id: cols.address_id,
        business_id: cols.business_id ?? null,
        discount_id: cols.discount_id ?? null,
        subscription_id: id,
        status: card ? 'ready' : 'billed',
        collection_mode: card ? 'automatic' : 'manual',
        currency_code: cols.currency_code,
        items,
        billing_details: billingDetails,
      },
      now,
    )
    return { entity: 'transactions', id: txnId }
  },
  /** Without a sub_ id: make sure its transaction is at Paddle, then look for the subscription. */
  async pushNew(p, sub) {
    let txn = p.load(transactions, String(sub.origin_transaction_id))
    if (!txn) throw claError('CLA_ERR_INTERNAL', `subscription ${sub.id} has no origin transaction`)
    if (!txn.paddle_id) {
      // The transaction's own push (its failure is recorded on the transaction row).
      await p.push('transactions', txn.id)
      txn = p.load(transactions, txn.id)!
      if (!txn.paddle_id) {
        throw claError(
          'CLA_ERR_BILLING_DEPENDENCY_PENDING',
          `waiting for transaction ${txn.id} to reach Paddle first`,
          {
            details: { entity: 'transactions', id: txn.id },
          },
        )
      }
    }
    const t = (await p.paddle.get<PaddleObj>(`/transactions/${String(txn.paddle_id)}`)).data
    p.merge(transactions, txn, t, false)
    const subId = typeof t.subscription_id === 'string' ? t.subscription_id : null
    if (!subId && t.collection_mode === 'automatic') {
      throw claError(
        'CLA_ERR_BILLING_DEPENDENCY_PENDING',
        `waiting for the customer to pay at checkout (transaction ${String(txn.paddle_id)}); the subscription.created webhook links it`,
        { details: { entity: 'transactions', id: txn.id, paddle_id: txn.paddle_id } },
      )
    }
    if (!subId) {
      throw claError(
        'CLA_ERR_BILLING_DEPENDENCY_PENDING',
        `Paddle has not made the subscription for transaction ${String(txn.paddle_id)} yet`,
        {
          details: { entity: 'transactions', id: txn.id, paddle_id: txn.paddle_id },
        },
      )
    }
    const s = (await p.paddle.get<PaddleObj>(`/subscriptions/${subId}`)).data
    const linked = p.load(subscriptions, sub.id)!
    if (linked.pending_change == null) return p.merge(subscriptions, linked, s, true)
    // an action of ours was decided before Paddle made the subscription: link, then send it
    p.merge(subscriptions, linked, s, false)
    const withId = p.load(subscriptions, sub.id)!
    p.merge(subscriptions, withId, (await sendChange(p, withId)) ?? s, true)
  },
  pushChange: sendChange,
  heldWhileChanging: HELD_WHILE_CHANGING,
  afterMerge: syncItemsFromPaddle,
  snapshotRow(db, obj) {
    // Made by Paddle from our transaction: its transaction_id (or our id that Paddle copied
    // from the transaction's custom_data) names our subscription, not yet linked.
    const cd = (obj.custom_data ?? {}) as Record<string, unknown>
    const viaTxn =
      typeof obj.transaction_id === 'string'
        ? (db
            .prepare('SELECT subscription_id FROM transactions WHERE paddle_id = ?')
            .get(obj.transaction_id) as { subscription_id: string | null } | undefined)
        : undefined
    const ourSub =
      viaTxn?.subscription_id ??
      (typeof cd.clavitor_subscription_id === 'string' ? cd.clavitor_subscription_id : undefined)
    if (!ourSub) return undefined
    const r: Row | undefined = loadRow(db, 'subscriptions', ourSub)
    return r && r.paddle_id == null ? r : undefined
  },
  finalStatuses: ['canceled'],
  // Linked means Paddle made it from our transaction: nothing of ours is left to send.
  linkCompletesPush: true,
}

/** A card subscription's checkout link: Paddle's `checkout.url` of its origin transaction. */
function checkoutUrl(
  db: Parameters<NonNullable<EntitySpec['present']>>[0],
  row: Row,
): string | null {
  if (row.collection_mode !== 'automatic' || !row.origin_transaction_id) return null
  const raw = db
    .prepare('SELECT raw FROM transactions WHERE id = ?')
    .pluck()
    .get(row.origin_transaction_id) as string | null | undefined
  if (!raw) return null
  const url = (JSON.parse(raw) as { checkout?: { url?: unknown } | null }).checkout?.url
  return typeof url === 'string' ? url : null
}
