// Money moving: transactions (manual collection by default, the MSP discount applied) and
// adjustments (refunds, credits; immutable at Paddle). One description each (see
// entity-spec.ts for what the fields mean).
import { Type } from '@sinclair/typebox'
import { claError } from '../errors.js'
import type { EntitySpec, MapCtx } from './entity-spec.js'
import {
  clean,
  customData,
  customerCustomData,
  customerFromPaddle,
  parseJson,
  userCustomData,
  str,
} from './mapping.js'
import { checkRefs, mspDiscountFor, requireRow } from './references.js'
import {
  BillingDetails,
  Currency,
  CustomData,
  Id,
  Item,
  Money,
  partialUpdate,
  strict,
} from './schemas.js'

/** Default billing_details for a manual-collection transaction (ours): net 30. */
export const DEFAULT_BILLING_DETAILS = {
  enable_checkout: false,
  payment_terms: { interval: 'day', frequency: 30 },
}

function itemsToPaddle(ctx: MapCtx, items: unknown): Array<{ price_id: string; quantity: number }> {
  return ((parseJson(items) as Array<{ price_id: string; quantity?: number }>) ?? []).map((it) => ({
    price_id: ctx.paddleIdOf('prices', it.price_id),
    quantity: it.quantity ?? 1,
  }))
}

const transactionProps = {
  address_id: Type.Optional(Id),
  business_id: Type.Optional(Id),
  discount_id: Type.Optional(Id),
  collection_mode: Type.Optional(Type.Union([Type.Literal('manual'), Type.Literal('automatic')])),
  items: Type.Array(Item, { minItems: 1, maxItems: 100 }),
  billing_details: Type.Optional(BillingDetails),
  custom_data: Type.Optional(CustomData),
}
export const transactions: EntitySpec = {
  name: 'transactions',
  table: 'transactions',
  prefix: 'trn',
  paddlePrefix: 'txn',
  eventName: 'transaction',
  create: Type.Object(
    {
      customer_id: Type.Optional(Id),
      currency_code: Currency,
      status: Type.Optional(Type.Literal('billed')),
      ...transactionProps,
    },
    strict,
  ),
  update: partialUpdate({
    ...transactionProps,
    status: Type.Union([Type.Literal('billed'), Type.Literal('canceled')]),
  }),
  json: ['custom_data', 'items', 'billing_details', 'details'],
  bool: [],
  prepare(db, c, existing) {
    checkRefs(db, c)
    const customer = (c.customer_id ?? existing?.customer_id) as string | undefined
    if (!existing && !c.discount_id && customer) {
      const d = mspDiscountFor(db, customer)
      if (d) c.discount_id = d
    }
    const mode = c.collection_mode ?? existing?.collection_mode ?? 'manual'
    if (mode === 'manual' && !existing && !c.billing_details)
      c.billing_details = JSON.stringify(DEFAULT_BILLING_DETAILS)
    if (!existing) c.status = c.status ?? 'draft'
    if (
      (c.status ?? existing?.status) === 'billed' &&
      (!customer || !(c.address_id ?? existing?.address_id))
    ) {
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        'a billed transaction needs customer_id and address_id',
        { details: { field: 'address_id' } },
      )
    }
  },
  collection: () => '/transactions',
  item: (_r, _c, pid) => `/transactions/${pid}`,
  toPaddle: (r, ctx) =>
    clean({
      items: itemsToPaddle(ctx, r.items),
      customer_id: r.customer_id ? ctx.paddleIdOf('customers', String(r.customer_id)) : null,
      address_id: r.address_id ? ctx.paddleIdOf('addresses', String(r.address_id)) : null,
      business_id: r.business_id ? ctx.paddleIdOf('businesses', String(r.business_id)) : null,
      discount_id: r.discount_id ? ctx.paddleIdOf('discounts', String(r.discount_id)) : null,
      currency_code: r.currency_code,
      collection_mode: r.collection_mode,
      billing_details: parseJson(r.billing_details),
      status: r.status === 'billed' || r.status === 'canceled' ? r.status : null,
      custom_data: customData(r, {
        ...(r.subscription_id ? { clavitor_subscription_id: r.subscription_id } : {}),
        ...customerCustomData(ctx, r.customer_id),
      }),
    }),
  fromPaddle: (o, ctx) => {
    const totals = ((o.details as Record<string, unknown> | undefined)?.totals ?? {}) as Record<
      string,
      unknown
    >
    return {
      customer_id: customerFromPaddle(o, ctx),
      address_id: ctx.ourIdOf('addresses', str(o.address_id)),
      business_id: ctx.ourIdOf('businesses', str(o.business_id)),
      discount_id: ctx.ourIdOf('discounts', str(o.discount_id)),
      status: str(o.status) ?? 'draft',
      origin: str(o.origin),
      collection_mode: str(o.collection_mode) ?? 'automatic',
      currency_code: str(o.currency_code) ?? 'USD',
      items: JSON.stringify(
        ((o.items as Array<Record<string, unknown>>) ?? []).map((it) => ({
          price_id: ctx.ourIdOf(
            'prices',
            str(it.price_id ?? (it.price as Record<string, unknown> | undefined)?.id),
          ),
          quantity: Number(it.quantity ?? 1),
        })),
      ),
      billing_details: o.billing_details ? JSON.stringify(o.billing_details) : null,
      details: o.details ? JSON.stringify(o.details) : null,
      total: str(totals.total),
      tax: str(totals.tax),
      grand_total: str(totals.grand_total),
      billed_at: str(o.billed_at),
      custom_data: userCustomData(o.custom_data),
    }
  },
  paddleOwned: ['status', 'origin', 'details', 'total', 'tax', 'grand_total', 'billed_at'],
  perPage: 30,
  customerColumn: 'customer_id',
  // An earlier attempt's create already sent these fields: the transaction is taken as
  // Paddle made it, not PATCHed again.
  adoptAsIs: true,
  async afterPush(p, row) {
    // The transaction that makes a subscription: the subscription can be linked now.
    if (row.subscription_id) await p.push('subscriptions', String(row.subscription_id))
  },
  mirror(cols, obj, ctx) {
    cols.subscription_id = ctx.ourIdOf(
      'subscriptions',
      typeof obj.subscription_id === 'string' ? obj.subscription_id : null,
    )
  },
}

// --- adjustments (refunds, credits) -------------------------------------------------------
// Paddle keeps no custom_data on adjustments and never changes one after creation, so a
// retry recognises its own adjustment by transaction, action, reason, type and items
// among the transaction's adjustments (skipping any already linked to another row).
const AdjustmentItem = Type.Object(
  {
    item_id: Type.String({
      minLength: 1,
      maxLength: 64,
      description: "Paddle's transaction item id (txnitm_…)",
    }),
    type: Type.String({ minLength: 1, maxLength: 40 }),
    amount: Type.Optional(Money),
  },
  strict,
)
export const adjustments: EntitySpec = {
  name: 'adjustments',
  table: 'adjustments',
  prefix: 'adj',
  paddlePrefix: 'adj',
  eventName: 'adjustment',
  create: Type.Object(
    {
      transaction_id: Id,
      action: Type.String({
        minLength: 1,
        maxLength: 40,
        description: 'refund | credit | chargeback | …',
      }),
      reason: Type.String({ minLength: 1, maxLength: 1000 }),
      type: Type.Optional(
        Type.String({ minLength: 1, maxLength: 40, description: 'full | partial' }),
      ),
      items: Type.Optional(Type.Array(AdjustmentItem, { maxItems: 100 })),
    },
    strict,
  ),
  update: Type.Object({}, { ...strict, minProperties: 1 }),
  json: ['items'],
  bool: [],
  immutable: true,
  prepare(db, c) {
    const txn = requireRow(db, 'transactions', c.transaction_id, 'transaction_id')
    c.customer_id = txn.customer_id ?? null
    c.subscription_id = txn.subscription_id ?? null
    c.currency_code = txn.currency_code
    if ((c.type ?? 'partial') === 'partial' && !(parseJson(c.items) as unknown[] | null)?.length) {
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        'items: a partial adjustment names the items it adjusts',
        { details: { field: 'items' } },
      )
    }
    c.status = 'pending_approval'
  },
  collection: () => '/adjustments',
  item: (_r, _c, pid) => `/adjustments/${pid}`,
  toPaddle: (r, ctx) =>
    clean({
      transaction_id: ctx.paddleIdOf('transactions', String(r.transaction_id)),
      action: r.action,
      reason: r.reason,
      type: r.type,
      items: parseJson(r.items),
    }),
  fromPaddle: (o, ctx) => {
    const totals = (o.totals ?? {}) as Record<string, unknown>
    const transactionId = ctx.ourIdOf('transactions', str(o.transaction_id))
    // no custom_data at Paddle: the customer is its transaction's (a department's, when
    // billed through its parent's ctm_)
    const txnCustomer = transactionId
      ? (ctx.db
          .prepare('SELECT customer_id FROM transactions WHERE id = ?')
          .pluck()
          .get(transactionId) as string | null | undefined)
      : undefined
    return {
      transaction_id: transactionId,
      subscription_id: ctx.ourIdOf('subscriptions', str(o.subscription_id)),
      customer_id: txnCustomer ?? ctx.ourIdOf('customers', str(o.customer_id)),
      action: str(o.action) ?? 'refund',
      type: str(o.type),
      reason: str(o.reason) ?? '',
      items: o.items ? JSON.stringify(o.items) : null,
      currency_code: str(o.currency_code),
      total: str(totals.total),
      status: str(o.status) ?? 'pending_approval',
    }
  },
  mirrorNeeds: ['transaction_id'],
  paddleOwned: ['status', 'total', 'currency_code'],
  perPage: 50,
  customerColumn: 'customer_id',
  findQuery: (r, ctx) => ({
    transaction_id: ctx.paddleIdOf('transactions', String(r.transaction_id)),
  }),
  matches(r, o, ctx) {
    const mine = (parseJson(r.items) as Array<Record<string, unknown>> | null) ?? []
    const theirs = ((o.items as Array<Record<string, unknown>> | undefined) ?? []).map((it) => ({
      item_id: it.item_id,
      type: it.type,
      ...(it.amount !== undefined && it.amount !== null ? { amount: String(it.amount) } : {}),
    }))
    const same =
      o.action === r.action &&
      o.reason === r.reason &&
      (r.type == null || o.type === r.type) &&
      JSON.stringify(theirs) ===
        JSON.stringify(
          mine.map((it) => ({
            item_id: it.item_id,
            type: it.type,
            ...(it.amount !== undefined ? { amount: it.amount } : {}),
          })),
        )
    if (!same) return false
    const linked = ctx.db.prepare('SELECT id FROM adjustments WHERE paddle_id = ?').get(o.id) as
      { id: string } | undefined
    return !linked || linked.id === r.id
  },
}
