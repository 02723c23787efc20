// Subscriptions: Paddle cannot create one directly, so ours is pushed as a billed
// manual-collection transaction and linked when Paddle's sub_ id appears (docs/billing.md
// "Subscriptions"). The description (see entity-spec.ts for what the fields mean).
import { Type } from '@sinclair/typebox'
import { claError } from '../errors.js'
import type { EntitySpec } from './entity-spec.js'
import { clean, customData, parseJson, userCustomData, str } from './mapping.js'
import { checkRefs, mspDiscountFor } from './references.js'
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
  json: ['custom_data', 'scheduled_change'],
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
  // Not created directly: pushed as a manual-collection transaction (see billing.ts).
  collection: () => null,
  item: (_r, _c, pid) => `/subscriptions/${pid}`,
  toPaddle: (r) => clean({ custom_data: customData(r) }),
  fromPaddle: (o, ctx) => {
    const bc = (o.billing_cycle ?? null) as Record<string, unknown> | null
    const period = (o.current_billing_period ?? null) as Record<string, unknown> | null
    const disc = (o.discount ?? null) as Record<string, unknown> | null
    return {
      customer_id: ctx.ourIdOf('customers', str(o.customer_id)),
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
}
