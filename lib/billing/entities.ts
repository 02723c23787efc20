// The per-entity descriptions that drive the one dual-write mechanism (billing.ts): for
// each mirrored entity, its table, our id prefix, the input schemas (TypeBox), extra
// checks, and how a row maps to Paddle's request body and back. Adding an entity is one
// more description here, never another copy of the flow.
import { Type, type TSchema } from '@sinclair/typebox'
import { claError } from '../errors.js'
import type { Db } from '../db/open.js'
import { CUSTOM_ID_KEY } from './ids.js'

export const ENTITY_NAMES = [
  'products',
  'prices',
  'customers',
  'discounts',
  'addresses',
  'businesses',
  'transactions',
  'subscriptions',
  'adjustments',
] as const
/** In this order the retry worker pushes rows, so a parent reaches Paddle before its child. */
export type EntityName = (typeof ENTITY_NAMES)[number]

export type Row = Record<string, unknown> & { id: string }
export type PaddleObj = Record<string, unknown> & { id: string }

export interface MapCtx {
  db: Db
  /** Paddle's id of one of our rows; throws CLA_ERR_BILLING_DEPENDENCY_PENDING when it has none yet. */
  paddleIdOf(entity: EntityName, ourId: string): string
  /** Our id for a Paddle id, or Paddle's id itself when the object is unknown here. */
  ourIdOf(entity: EntityName, paddleId: string | null | undefined): string | null
}

export interface EntitySpec {
  name: EntityName
  table: string
  /** Our id prefix (Paddle's prefix is `paddlePrefix`). */
  prefix: string
  paddlePrefix: string
  /** Webhook entity name (`customer` in `customer.updated`). */
  eventName: string
  create: TSchema
  update: TSchema
  /** Columns stored as JSON text. */
  json: string[]
  /** Columns stored as 0/1. */
  bool: string[]
  /** Extra checks and derived columns beyond the schema (throws typed errors). */
  prepare?(db: Db, cols: Record<string, unknown>, existing: Row | undefined): void
  /** Paddle collection path for this row (may need a parent's Paddle id). Null = not created directly. */
  collection(row: Row, ctx: MapCtx): string | null
  item(row: Row, ctx: MapCtx, paddleId: string): string
  toPaddle(row: Row, ctx: MapCtx, op: 'create' | 'update'): Record<string, unknown>
  /** Mirror columns from a Paddle snapshot. */
  fromPaddle(o: PaddleObj, ctx: MapCtx): Record<string, unknown>
  /** Columns Paddle owns: taken from every answer, even while our row is pending. */
  paddleOwned: string[]
  /** Page size for find-before-create lists. */
  perPage: number
  /** Paddle cannot change it after creation (adjustments): update() refuses. */
  immutable?: boolean
  /**
   * References a webhook never changes on a row we hold: a subscription, an address, a
   * business stays with its customer. A snapshot naming another is parked, not applied
   * (billing.applySnapshot; docs/billing.md "Parked events").
   */
  webhookFixed?: readonly string[]
  /** Extra query for find-before-create lists (e.g. transaction_id). */
  findQuery?(row: Row, ctx: MapCtx): Record<string, string>
  /**
   * Is this Paddle object the one our row created? Default: custom_data.clavitor_id ===
   * row.id. Entities without custom_data (adjustments) compare their fields instead.
   */
  matches?(row: Row, o: PaddleObj, ctx: MapCtx): boolean
}

// --- shared schema pieces ----------------------------------------------------------------
export const Money = Type.String({
  pattern: '^(0|[1-9][0-9]{0,17})$',
  description: 'must be a string of minor-unit digits, e.g. "1200" for 12.00',
})
const Currency = Type.String({
  pattern: '^[A-Z]{3}$',
  description: 'must be an ISO 4217 code in capitals, e.g. "EUR"',
})
const Country = Type.String({
  pattern: '^[A-Z]{2}$',
  description: 'must be an ISO 3166 alpha-2 code in capitals, e.g. "DE"',
})
const Id = Type.String({ minLength: 1, maxLength: 64 })
const Text = (max = 500) => Type.String({ maxLength: max })
const CustomData = Type.Record(Type.String(), Type.Unknown())
const Status = Type.String({ minLength: 1, maxLength: 40 }) // any value: Paddle adds enums
const Interval = Type.Union([
  Type.Literal('day'),
  Type.Literal('week'),
  Type.Literal('month'),
  Type.Literal('year'),
])
const Email = Type.String({
  pattern: '^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$',
  maxLength: 320,
  description: 'must be an email address',
})
const strict = { additionalProperties: false }

function partialUpdate(props: Record<string, TSchema>): TSchema {
  const opt: Record<string, TSchema> = {}
  for (const [k, v] of Object.entries(props)) opt[k] = Type.Optional(v)
  return Type.Object({ ...opt, status: Type.Optional(Status) }, { ...strict, minProperties: 1 })
}

/** Removes null/undefined so Paddle gets only what we set. */
function clean(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(o)) if (v !== null && v !== undefined) out[k] = v
  return out
}

function parseJson(v: unknown): unknown {
  if (typeof v !== 'string') return v ?? null
  try {
    return JSON.parse(v)
  } catch {
    return null
  }
}

/** custom_data sent to Paddle: the caller's keys plus our id (and any extra keys of ours). */
function customData(row: Row, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const user = (parseJson(row.custom_data) as Record<string, unknown> | null) ?? {}
  return { ...user, ...extra, [CUSTOM_ID_KEY]: row.id }
}

/** custom_data from Paddle without our own clavitor_* keys; null when nothing is left. */
function userCustomData(cd: unknown): string | null {
  if (!cd || typeof cd !== 'object') return null
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(cd as Record<string, unknown>))
    if (!k.startsWith('clavitor_')) out[k] = v
  return Object.keys(out).length ? JSON.stringify(out) : null
}

const str = (v: unknown): string | null =>
  typeof v === 'string' ? v : v === null || v === undefined ? null : String(v)
const bool = (v: unknown): number => (v ? 1 : 0)

// --- customers ---------------------------------------------------------------------------
const customerProps = {
  email: Email,
  name: Type.Optional(Text(200)),
  locale: Type.Optional(Type.String({ pattern: '^[a-z]{2}([-_][A-Za-z]{2,4})?$' })),
  marketing_consent: Type.Optional(Type.Boolean()),
  custom_data: Type.Optional(CustomData),
}

/** Walks up from `startId`; returns the chain of ids (start first). Throws on a cycle. */
export function ancestors(
  db: Db,
  startId: string,
): Array<{ id: string; level: number; parent_id: string | null }> {
  const chain: Array<{ id: string; level: number; parent_id: string | null }> = []
  const seen = new Set<string>()
  let id: string | null = startId
  const stmt = db.prepare('SELECT id, level, parent_id FROM customers WHERE id = ?')
  while (id) {
    if (seen.has(id))
      throw claError('CLA_ERR_BILLING_HIERARCHY', `customer hierarchy has a cycle at ${id}`, {
        details: { id },
      })
    seen.add(id)
    const r = stmt.get(id) as { id: string; level: number; parent_id: string | null } | undefined
    if (!r) break
    chain.push(r)
    id = r.parent_id
  }
  return chain
}

const customers: EntitySpec = {
  name: 'customers',
  table: 'customers',
  prefix: 'cus',
  paddlePrefix: 'ctm',
  eventName: 'customer',
  create: Type.Object(
    {
      ...customerProps,
      parent_id: Type.Optional(Type.Union([Id, Type.Null()])),
      level: Type.Optional(Type.Integer()),
    },
    strict,
  ),
  update: partialUpdate({
    ...customerProps,
    email: Email,
    parent_id: Type.Union([Id, Type.Null()]),
  }),
  json: ['custom_data'],
  bool: ['marketing_consent'],
  prepare(db, c, existing) {
    const parentId = (c.parent_id === undefined ? existing?.parent_id : c.parent_id) as
      string | null | undefined
    if (existing && c.level !== undefined && c.level !== existing.level) {
      throw claError(
        'CLA_ERR_BILLING_HIERARCHY',
        'a customer keeps its level (1 MSP, 2 customer, 3 department)',
        {
          details: { id: existing.id },
        },
      )
    }
    let level: number
    if (!parentId) {
      level = 1
    } else {
      const parent = db.prepare('SELECT id, level FROM customers WHERE id = ?').get(parentId) as
        { id: string; level: number } | undefined
      if (!parent)
        throw claError('CLA_ERR_BILLING_HIERARCHY', `parent customer ${parentId} does not exist`, {
          details: { parent_id: parentId },
        })
      if (parent.level >= 3) {
        throw claError(
          'CLA_ERR_BILLING_HIERARCHY',
          `customer ${parentId} is a department (level 3); a department has no children`,
          {
            details: { parent_id: parentId, level: parent.level + 1 },
          },
        )
      }
      if (existing) {
        const chain = ancestors(db, parentId)
        if (chain.some((a) => a.id === existing.id)) {
          throw claError(
            'CLA_ERR_BILLING_HIERARCHY',
            `moving ${existing.id} under ${parentId} would make a cycle`,
            {
              details: { id: existing.id, parent_id: parentId },
            },
          )
        }
      }
      level = parent.level + 1
    }
    const wanted = c.level ?? existing?.level
    if (wanted !== undefined && wanted !== level) {
      throw claError(
        'CLA_ERR_BILLING_HIERARCHY',
        `level must be ${level} (parent level + 1; 1 MSP, 2 customer, 3 department), got ${String(wanted)}`,
        {
          details: { level: wanted, expected: level },
        },
      )
    }
    if (c.parent_id !== undefined || !existing) c.parent_id = parentId ?? null
    if (!existing) c.level = level
    else delete c.level
  },
  collection: () => '/customers',
  item: (_r, _c, pid) => `/customers/${pid}`,
  toPaddle: (r, _ctx, op) =>
    clean({
      email: r.email,
      name: r.name,
      locale: r.locale,
      custom_data: customData(r, {
        clavitor_level: r.level,
        ...(r.parent_id ? { clavitor_parent_id: r.parent_id } : {}),
      }),
      ...(op === 'update' ? { status: r.status } : {}),
    }),
  fromPaddle: (o) => ({
    email: str(o.email),
    name: str(o.name),
    locale: str(o.locale) ?? 'en',
    marketing_consent: bool(o.marketing_consent),
    status: str(o.status) ?? 'active',
    custom_data: userCustomData(o.custom_data),
  }),
  paddleOwned: ['marketing_consent'],
  perPage: 200,
}

// --- addresses / businesses --------------------------------------------------------------
const addressProps = {
  description: Type.Optional(Text(200)),
  first_line: Type.Optional(Text(200)),
  second_line: Type.Optional(Text(200)),
  city: Type.Optional(Text(200)),
  postal_code: Type.Optional(Text(40)),
  region: Type.Optional(Text(200)),
  custom_data: Type.Optional(CustomData),
}
function requireRow(db: Db, table: string, id: unknown, field: string): Row {
  const r = db.prepare(`SELECT * FROM ${table} WHERE id = ?`).get(id) as Row | undefined
  if (!r)
    throw claError('CLA_ERR_INVALID_INPUT', `${field}: no ${table} row with id ${String(id)}`, {
      details: { field, id },
    })
  return r
}
const addresses: EntitySpec = {
  name: 'addresses',
  table: 'addresses',
  prefix: 'adr',
  paddlePrefix: 'add',
  eventName: 'address',
  create: Type.Object({ customer_id: Id, country_code: Country, ...addressProps }, strict),
  update: partialUpdate({ ...addressProps, country_code: Country }),
  json: ['custom_data'],
  bool: [],
  prepare(db, c, existing) {
    if (!existing) requireRow(db, 'customers', c.customer_id, 'customer_id')
  },
  collection: (r, ctx) =>
    `/customers/${ctx.paddleIdOf('customers', String(r.customer_id))}/addresses`,
  item: (r, ctx, pid) =>
    `/customers/${ctx.paddleIdOf('customers', String(r.customer_id))}/addresses/${pid}`,
  toPaddle: (r, _ctx, op) =>
    clean({
      description: r.description,
      first_line: r.first_line,
      second_line: r.second_line,
      city: r.city,
      postal_code: r.postal_code,
      region: r.region,
      country_code: r.country_code,
      custom_data: customData(r),
      ...(op === 'update' ? { status: r.status } : {}),
    }),
  fromPaddle: (o, ctx) => ({
    customer_id: ctx.ourIdOf('customers', str(o.customer_id)),
    description: str(o.description),
    first_line: str(o.first_line),
    second_line: str(o.second_line),
    city: str(o.city),
    postal_code: str(o.postal_code),
    region: str(o.region),
    country_code: str(o.country_code) ?? 'ZZ',
    status: str(o.status) ?? 'active',
    custom_data: userCustomData(o.custom_data),
  }),
  webhookFixed: ['customer_id'],
  paddleOwned: [],
  perPage: 200,
}

const Contact = Type.Object({ name: Type.Optional(Text(200)), email: Email }, strict)
const businessProps = {
  company_number: Type.Optional(Text(100)),
  tax_identifier: Type.Optional(Text(100)),
  contacts: Type.Optional(Type.Array(Contact, { maxItems: 50 })),
  custom_data: Type.Optional(CustomData),
}
const businesses: EntitySpec = {
  name: 'businesses',
  table: 'businesses',
  prefix: 'bus',
  paddlePrefix: 'biz',
  eventName: 'business',
  create: Type.Object({ customer_id: Id, name: Text(200), ...businessProps }, strict),
  update: partialUpdate({ ...businessProps, name: Text(200) }),
  json: ['custom_data', 'contacts'],
  bool: [],
  prepare(db, c, existing) {
    if (!existing) requireRow(db, 'customers', c.customer_id, 'customer_id')
  },
  collection: (r, ctx) =>
    `/customers/${ctx.paddleIdOf('customers', String(r.customer_id))}/businesses`,
  item: (r, ctx, pid) =>
    `/customers/${ctx.paddleIdOf('customers', String(r.customer_id))}/businesses/${pid}`,
  toPaddle: (r, _ctx, op) =>
    clean({
      name: r.name,
      company_number: r.company_number,
      tax_identifier: r.tax_identifier,
      contacts: parseJson(r.contacts),
      custom_data: customData(r),
      ...(op === 'update' ? { status: r.status } : {}),
    }),
  fromPaddle: (o, ctx) => ({
    customer_id: ctx.ourIdOf('customers', str(o.customer_id)),
    name: str(o.name) ?? '',
    company_number: str(o.company_number),
    tax_identifier: str(o.tax_identifier),
    contacts: o.contacts ? JSON.stringify(o.contacts) : null,
    status: str(o.status) ?? 'active',
    custom_data: userCustomData(o.custom_data),
  }),
  webhookFixed: ['customer_id'],
  paddleOwned: [],
  perPage: 200,
}

// --- products / prices -------------------------------------------------------------------
const productProps = {
  description: Type.Optional(Text(2000)),
  type: Type.Optional(Type.String({ maxLength: 40 })),
  tax_category: Type.Optional(Type.String({ maxLength: 60 })),
  image_url: Type.Optional(Type.String({ maxLength: 2000, pattern: '^https://' })),
  custom_data: Type.Optional(CustomData),
}
const products: EntitySpec = {
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
const prices: EntitySpec = {
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
const discounts: EntitySpec = {
  name: 'discounts',
  table: 'discounts',
  prefix: 'dis',
  paddlePrefix: 'dsc',
  eventName: 'discount',
  create: Type.Object({ ...discountProps, msp_id: Type.Optional(Id) }, strict),
  update: partialUpdate({ ...discountProps }),
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
}

// --- transactions / subscriptions --------------------------------------------------------
const Item = Type.Object(
  { price_id: Id, quantity: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000 })) },
  strict,
)
const BillingDetails = Type.Record(Type.String(), Type.Unknown())
/** Default billing_details for a manual-collection transaction (ours): net 30. */
export const DEFAULT_BILLING_DETAILS = {
  enable_checkout: false,
  payment_terms: { interval: 'day', frequency: 30 },
}

/** The discount of the MSP above `customerId`, if any (ours: the MSP margin). */
export function mspDiscountFor(db: Db, customerId: string): string | null {
  const chain = ancestors(db, customerId)
  const msp = chain.find((a) => a.level === 1)
  if (!msp) return null
  const d = db.prepare('SELECT id FROM discounts WHERE msp_id = ?').get(msp.id) as
    { id: string } | undefined
  return d?.id ?? null
}

function checkRefs(db: Db, c: Record<string, unknown>): void {
  if (c.customer_id) requireRow(db, 'customers', c.customer_id, 'customer_id')
  if (c.address_id) requireRow(db, 'addresses', c.address_id, 'address_id')
  if (c.business_id) requireRow(db, 'businesses', c.business_id, 'business_id')
  if (c.discount_id) requireRow(db, 'discounts', c.discount_id, 'discount_id')
  const items = parseJson(c.items) as Array<{ price_id: string }> | null
  for (const it of items ?? []) requireRow(db, 'prices', it.price_id, 'items.price_id')
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
const transactions: EntitySpec = {
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
      custom_data: customData(
        r,
        r.subscription_id ? { clavitor_subscription_id: r.subscription_id } : {},
      ),
    }),
  fromPaddle: (o, ctx) => {
    const totals = ((o.details as Record<string, unknown> | undefined)?.totals ?? {}) as Record<
      string,
      unknown
    >
    return {
      customer_id: ctx.ourIdOf('customers', str(o.customer_id)),
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
}

const subscriptions: EntitySpec = {
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
const adjustments: EntitySpec = {
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
    return {
      transaction_id: ctx.ourIdOf('transactions', str(o.transaction_id)),
      subscription_id: ctx.ourIdOf('subscriptions', str(o.subscription_id)),
      customer_id: ctx.ourIdOf('customers', str(o.customer_id)),
      action: str(o.action) ?? 'refund',
      type: str(o.type),
      reason: str(o.reason) ?? '',
      items: o.items ? JSON.stringify(o.items) : null,
      currency_code: str(o.currency_code),
      total: str(totals.total),
      status: str(o.status) ?? 'pending_approval',
    }
  },
  paddleOwned: ['status', 'total', 'currency_code'],
  perPage: 50,
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

export const ENTITIES: Record<EntityName, EntitySpec> = {
  products,
  prices,
  customers,
  discounts,
  addresses,
  businesses,
  transactions,
  subscriptions,
  adjustments,
}

export function entitySpec(name: string): EntitySpec {
  const spec = (ENTITIES as Record<string, EntitySpec | undefined>)[name]
  if (!spec) {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      `unknown billing entity "${name}"; one of ${ENTITY_NAMES.join(', ')}`,
      {
        details: { entity: name },
      },
    )
  }
  return spec
}

export function entityForPaddleId(paddleId: string): EntitySpec | undefined {
  const prefix = paddleId.split('_')[0]
  return Object.values(ENTITIES).find((s) => s.paddlePrefix === prefix)
}

export { parseJson }
