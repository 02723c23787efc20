// What we sell: products, their prices, and discounts (an MSP's margin is its discount).
// One description each (see entity-spec.ts for what the fields mean).
import { Type } from '@sinclair/typebox'
import { claError } from '../errors.js'
import type { EntitySpec } from './entity-spec.js'
import { ACTIVE_AND_ARCHIVED, clean, customData, userCustomData, str, bool } from './mapping.js'
import { requireRow } from './references.js'
import {
  Currency,
  CustomData,
  Id,
  Interval,
  Money,
  Text,
  partialUpdate,
  strict,
} from './schemas.js'

// --- products / prices -------------------------------------------------------------------
const productProps = {
  description: Type.Optional(Text(2000)),
  type: Type.Optional(Type.String({ maxLength: 40 })),
  tax_category: Type.Optional(Type.String({ maxLength: 60 })),
  image_url: Type.Optional(Type.String({ maxLength: 2000, pattern: '^https://' })),
  custom_data: Type.Optional(CustomData),
}
export const products: EntitySpec = {
  name: 'products',
  table: 'products',
  prefix: 'prd',
  paddlePrefix: 'pro',
  eventName: 'product',
  create: Type.Object({ name: Text(200), ...productProps }, strict),
  update: partialUpdate({ ...productProps, name: Text(200) }),
  json: ['custom_data'],
  bool: [],
  collection: () => '/products',
  item: (_r, _c, pid) => `/products/${pid}`,
  toPaddle: (r, _ctx, op) =>
    clean({
      name: r.name,
      description: r.description,
      type: r.type,
      tax_category: r.tax_category,
      image_url: r.image_url,
      custom_data: customData(r),
      ...(op === 'update' ? { status: r.status } : {}),
    }),
  fromPaddle: (o) => ({
    name: str(o.name) ?? '',
    description: str(o.description),
    type: str(o.type),
    tax_category: str(o.tax_category) ?? 'standard',
    image_url: str(o.image_url),
    status: str(o.status) ?? 'active',
    custom_data: userCustomData(o.custom_data),
  }),
  paddleOwned: ['type'],
  perPage: 200,
  findStatus: ACTIVE_AND_ARCHIVED,
}

const priceProps = {
  name: Type.Optional(Text(200)),
  billing_interval: Type.Optional(Interval),
  billing_frequency: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  trial_interval: Type.Optional(Interval),
  trial_frequency: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
  tax_mode: Type.Optional(Type.String({ maxLength: 40 })),
  quantity_min: Type.Optional(Type.Integer({ minimum: 1 })),
  quantity_max: Type.Optional(Type.Integer({ minimum: 1 })),
  custom_data: Type.Optional(CustomData),
}
export const prices: EntitySpec = {
  name: 'prices',
  table: 'prices',
  prefix: 'prc',
  paddlePrefix: 'pri',
  eventName: 'price',
  create: Type.Object(
    {
      product_id: Id,
      description: Text(500),
      unit_amount: Money,
      currency_code: Currency,
      ...priceProps,
    },
    strict,
  ),
  update: partialUpdate({
    ...priceProps,
    description: Text(500),
    unit_amount: Money,
    currency_code: Currency,
  }),
  json: ['custom_data'],
  bool: [],
  prepare(db, c, existing) {
    if (!existing) requireRow(db, 'products', c.product_id, 'product_id')
    const interval = c.billing_interval ?? existing?.billing_interval
    if (interval && !(c.billing_frequency ?? existing?.billing_frequency)) c.billing_frequency = 1
    if (!interval && c.billing_frequency !== undefined) {
      throw claError('CLA_ERR_INVALID_INPUT', 'billing_frequency needs billing_interval', {
        details: { field: 'billing_frequency' },
      })
    }
  },
  collection: () => '/prices',
  item: (_r, _c, pid) => `/prices/${pid}`,
  toPaddle: (r, ctx, op) =>
    clean({
      ...(op === 'create' ? { product_id: ctx.paddleIdOf('products', String(r.product_id)) } : {}),
      description: r.description,
      name: r.name,
      unit_price: { amount: r.unit_amount, currency_code: r.currency_code },
      billing_cycle: r.billing_interval
        ? { interval: r.billing_interval, frequency: r.billing_frequency ?? 1 }
        : null,
      trial_period: r.trial_interval
        ? { interval: r.trial_interval, frequency: r.trial_frequency ?? 1 }
        : null,
      tax_mode: r.tax_mode,
      quantity: { minimum: r.quantity_min ?? 1, maximum: r.quantity_max ?? 100 },
      custom_data: customData(r),
      ...(op === 'update' ? { status: r.status } : {}),
    }),
  fromPaddle: (o, ctx) => {
    const up = (o.unit_price ?? {}) as Record<string, unknown>
    const bc = (o.billing_cycle ?? null) as Record<string, unknown> | null
    const tp = (o.trial_period ?? null) as Record<string, unknown> | null
    const q = (o.quantity ?? {}) as Record<string, unknown>
    return {
      product_id: ctx.ourIdOf('products', str(o.product_id)),
      description: str(o.description),
      name: str(o.name),
      unit_amount: str(up.amount) ?? '0',
      currency_code: str(up.currency_code) ?? 'USD',
      billing_interval: bc ? str(bc.interval) : null,
      billing_frequency: bc ? Number(bc.frequency ?? 1) : null,
      trial_interval: tp ? str(tp.interval) : null,
      trial_frequency: tp ? Number(tp.frequency ?? 1) : null,
      tax_mode: str(o.tax_mode) ?? 'account_setting',
      quantity_min: Number(q.minimum ?? 1),
      quantity_max: Number(q.maximum ?? 100),
      status: str(o.status) ?? 'active',
      custom_data: userCustomData(o.custom_data),
    }
  },
  paddleOwned: [],
  perPage: 200,
  findStatus: ACTIVE_AND_ARCHIVED,
}

// --- discounts ---------------------------------------------------------------------------
const discountProps = {
  description: Text(500),
  type: Type.String({ minLength: 1, maxLength: 40 }),
  amount: Type.String({ pattern: '^[0-9]+(\\.[0-9]{1,2})?$' }),
  currency_code: Type.Optional(Currency),
  code: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9]{1,32}$' })),
  enabled_for_checkout: Type.Optional(Type.Boolean()),
  recur: Type.Optional(Type.Boolean()),
  maximum_recurring_intervals: Type.Optional(Type.Integer({ minimum: 1 })),
  usage_limit: Type.Optional(Type.Integer({ minimum: 1 })),
  expires_at: Type.Optional(Type.String({ format: 'date-time' })),
  custom_data: Type.Optional(CustomData),
}
export const discounts: EntitySpec = {
  name: 'discounts',
  table: 'discounts',
  prefix: 'dis',
  paddlePrefix: 'dsc',
  eventName: 'discount',
  create: Type.Object({ ...discountProps, msp_id: Type.Optional(Id) }, strict),
  update: partialUpdate({ ...discountProps }),
  // a margin made for an MSP reaches the subscriptions its customers already have
  marginScope: (row, before) => (!before && row.msp_id ? String(row.msp_id) : null),
  json: ['custom_data'],
  bool: ['enabled_for_checkout', 'recur'],
  prepare(db, c, existing) {
    const type = String(c.type ?? existing?.type)
    const amount = String(c.amount ?? existing?.amount)
    if (type === 'percentage') {
      const n = Number(amount)
      if (!(n >= 0.01 && n <= 100)) {
        throw claError(
          'CLA_ERR_INVALID_INPUT',
          `amount: a percentage discount is "0.01" to "100", got "${amount}"`,
          { details: { field: 'amount' } },
        )
      }
    } else if (type === 'flat' || type === 'flat_per_seat') {
      if (!/^(0|[1-9][0-9]*)$/.test(amount)) {
        throw claError(
          'CLA_ERR_INVALID_INPUT',
          `amount: a flat discount is minor units (digits only), got "${amount}"`,
          { details: { field: 'amount' } },
        )
      }
      if (!(c.currency_code ?? existing?.currency_code)) {
        throw claError('CLA_ERR_INVALID_INPUT', 'currency_code is required for a flat discount', {
          details: { field: 'currency_code' },
        })
      }
    }
    if (!existing && c.msp_id !== undefined) {
      const msp = requireRow(db, 'customers', c.msp_id, 'msp_id')
      if (msp.level !== 1)
        throw claError(
          'CLA_ERR_BILLING_HIERARCHY',
          `msp_id ${String(c.msp_id)} is not an MSP (level 1)`,
          { details: { field: 'msp_id' } },
        )
      const other = db.prepare('SELECT id FROM discounts WHERE msp_id = ?').get(c.msp_id) as
        { id: string } | undefined
      if (other)
        throw claError(
          'CLA_ERR_BILLING_CONFLICT',
          `MSP ${String(c.msp_id)} has a discount already (${other.id}); one per MSP`,
          { details: { discount_id: other.id } },
        )
    }
  },
  collection: () => '/discounts',
  item: (_r, _c, pid) => `/discounts/${pid}`,
  toPaddle: (r, _ctx, op) =>
    clean({
      description: r.description,
      type: r.type,
      amount: r.amount,
      currency_code: r.currency_code,
      code: r.code,
      enabled_for_checkout:
        r.enabled_for_checkout === undefined ? undefined : Boolean(r.enabled_for_checkout),
      recur: r.recur === undefined ? undefined : Boolean(r.recur),
      maximum_recurring_intervals: r.maximum_recurring_intervals,
      usage_limit: r.usage_limit,
      expires_at: r.expires_at,
      custom_data: customData(r, r.msp_id ? { clavitor_msp_id: r.msp_id } : {}),
      ...(op === 'update' ? { status: r.status } : {}),
    }),
  fromPaddle: (o) => ({
    description: str(o.description) ?? '',
    type: str(o.type) ?? 'flat',
    amount: str(o.amount) ?? '0',
    currency_code: str(o.currency_code),
    code: str(o.code),
    enabled_for_checkout: bool(o.enabled_for_checkout),
    recur: bool(o.recur),
    maximum_recurring_intervals:
      typeof o.maximum_recurring_intervals === 'number' ? o.maximum_recurring_intervals : null,
    usage_limit: typeof o.usage_limit === 'number' ? o.usage_limit : null,
    expires_at: str(o.expires_at),
    status: str(o.status) ?? 'active',
    custom_data: userCustomData(o.custom_data),
  }),
  paddleOwned: [],
  perPage: 200,
  findStatus: ACTIVE_AND_ARCHIVED,
}
