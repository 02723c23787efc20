// A fake Paddle Billing API for tests and the demo: a real HTTP server (node:http) on
// loopback that answers Paddle's documented endpoints with Paddle's response and error
// shapes, ids and pagination, keeps its own state in memory, turns a billed manual
// transaction with recurring prices into a subscription, and sends signed webhooks.
// It can be told to fail: 5xx, 429 with Retry-After, a hang, "did the work, then dropped
// the connection", or "did the work late" (after the client gave up). See docs/billing.md
// ("The fake Paddle").
import { createHmac, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

/** Discount fields a client may set, on create and on PATCH (plus status on PATCH). */
const DISCOUNT_FIELDS = [
  'description',
  'type',
  'amount',
  'currency_code',
  'code',
  'enabled_for_checkout',
  'recur',
  'maximum_recurring_intervals',
  'usage_limit',
  'expires_at',
  'custom_data',
]
export type FailureKind = '5xx' | '429' | 'hang' | 'drop' | 'reject' | 'late'

export interface FailureRule {
  kind: FailureKind
  /** How many matching requests fail. Default 1; Infinity = until clearFailures(). */
  count?: number
  /** Only requests whose method matches (e.g. 'POST'). */
  method?: string
  /** Only requests whose path starts with this (e.g. '/customers'). */
  path?: string
  /** Retry-After seconds for '429'. Default 60. */
  retryAfterS?: number
  /** HTTP status for '5xx' (default 503) or 'reject' (default 400). */
  status?: number
  /** Paddle error code for 'reject'. Default 'bad_request'. */
  code?: string
  /** For 'late': the request is held this long, then done (and answered if anyone still listens). Default 1000. */
  delayMs?: number
}

export interface FakePaddleOptions {
  port?: number
  host?: string
  /** Where signed webhooks are POSTed; none sent when unset. */
  webhookUrl?: string
  /** Webhook destination secret. Default 'fake_paddle_secret'. */
  secret?: string
  /** Accepted API key; any Bearer token when unset. */
  apiKey?: string
  /** Page size cap for lists (Paddle: 200, transactions 30). */
  maxPerPage?: number
}

export interface WebhookEvent {
  event_id: string
  event_type: string
  occurred_at: string
  notification_id: string
  data: Record<string, unknown>
}

type Obj = Record<string, unknown> & { id: string }

export interface FakePaddleState {
  customers: Map<string, Obj>
  addresses: Map<string, Obj>
  businesses: Map<string, Obj>
  products: Map<string, Obj>
  prices: Map<string, Obj>
  discounts: Map<string, Obj>
  transactions: Map<string, Obj>
  subscriptions: Map<string, Obj>
  adjustments: Map<string, Obj>
  /** Every request seen, in order: method and path. */
  requests: Array<{ method: string; path: string }>
  /** Every event generated (delivered or not). */
  events: WebhookEvent[]
}

export interface WebhookMode {
  /** Hold events in the outbox instead of sending them at once. */
  hold?: boolean
  /** Send every event twice. */
  duplicate?: boolean
}

export interface FakePaddle {
  url: string
  state: FakePaddleState
  secret: string
  failNext(rule: FailureRule | FailureKind): void
  clearFailures(): void
  setWebhookMode(mode: WebhookMode): void
  /** Sends held events (optionally in reverse order, optionally twice); resolves when delivered. */
  flushWebhooks(opts?: { reverse?: boolean; duplicate?: boolean }): Promise<number[]>
  /** Signs a body like Paddle does: `ts=…;h1=…`. */
  sign(body: string, ts?: number): string
  /** The customer pays a card (automatic) transaction at checkout: completed, subscription made. */
  payTransaction(id: string): WebhookEvent[]
  /** Moves a subscription's status as Paddle would (emits subscription.updated + the status event). */
  setSubscriptionStatus(id: string, status: string): WebhookEvent[]
  /** Resolves when every request held by a 'late' rule has been done. */
  settle(): Promise<void>
  /** Count of objects at the fake whose custom_data.clavitor_id equals `ourId`. */
  countByCustomId(
    collection: keyof Omit<FakePaddleState, 'requests' | 'events'>,
    ourId: string,
  ): number
  close(): Promise<void>
}

const PREFIX: Record<string, string> = {
  customers: 'ctm',
  addresses: 'add',
  businesses: 'biz',
  products: 'pro',
  prices: 'pri',
  discounts: 'dsc',
  transactions: 'txn',
  subscriptions: 'sub',
  adjustments: 'adj',
  events: 'evt',
  notifications: 'ntf',
  requests: 'req',
}

const ALPHA = '0123456789abcdefghijklmnopqrstuvwxyz'
let counter = 0
/** `<prefix>_` + 26 lowercase alphanumerics, sortable in creation order. */
export function paddleId(prefix: string): string {
  counter += 1
  const time = Date.now().toString(36).padStart(10, '0')
  const seq = counter.toString(36).padStart(8, '0')
  let rand = ''
  for (const b of randomBytes(8)) rand += ALPHA[b % 36]
  return `${prefix}_${time}${seq}${rand}`
}

/** RFC 3339 with microseconds, like Paddle's occurred_at; strictly increasing per process. */
let lastMicros = 0
function nowRfc3339(): string {
  let us = Date.now() * 1000
  if (us <= lastMicros) us = lastMicros + 1
  lastMicros = us
  const ms = Math.floor(us / 1000)
  const iso = new Date(ms).toISOString() // …ss.mmmZ
  return `${iso.slice(0, 19)}.${String(us % 1_000_000).padStart(6, '0')}Z`
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly type: string,
    readonly code: string,
    readonly detail: string,
    readonly errors?: Array<{ field: string; message: string }>,
  ) {
    super(detail)
  }
}

const MONEY = /^(0|[1-9][0-9]*)$/

export async function startFakePaddle(opts: FakePaddleOptions = {}): Promise<FakePaddle> {
  const secret = opts.secret ?? 'fake_paddle_secret'
  const maxPerPage = opts.maxPerPage ?? 200
  const state: FakePaddleState = {
    customers: new Map(),
    addresses: new Map(),
    businesses: new Map(),
    products: new Map(),
    prices: new Map(),
    discounts: new Map(),
    transactions: new Map(),
    subscriptions: new Map(),
    adjustments: new Map(),
    requests: [],
    events: [],
  }
  let failures: Array<FailureRule & { left: number }> = []
  let mode: WebhookMode = {}
  const outbox: WebhookEvent[] = []
  const inflight = new Set<Promise<unknown>>()
  /** Requests held by a 'late' rule, done when their delay has passed. */
  const late = new Set<Promise<unknown>>()
  const sockets = new Set<Socket>()
  let url = ''

  const sign = (body: string, ts = Math.floor(Date.now() / 1000)): string =>
    `ts=${ts};h1=${createHmac('sha256', secret).update(`${ts}:${body}`).digest('hex')}`

  async function deliver(ev: WebhookEvent): Promise<number> {
    if (!opts.webhookUrl) return 0
    const body = JSON.stringify(ev)
    try {
      const res = await fetch(opts.webhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'paddle-signature': sign(body) },
        body,
        signal: AbortSignal.timeout(5000),
      })
      await res.arrayBuffer()
      return res.status
    } catch {
      return 0
    }
  }

  function emit(eventType: string, data: Obj): WebhookEvent {
    const ev: WebhookEvent = {
      event_id: paddleId('evt'),
      event_type: eventType,
      occurred_at: nowRfc3339(),
      notification_id: paddleId('ntf'),
      data: structuredClone(data),
    }
    state.events.push(ev)
    if (opts.webhookUrl) {
      if (mode.hold) outbox.push(ev)
      else {
        const times = mode.duplicate ? 2 : 1
        for (let i = 0; i < times; i++) {
          const p = deliver(ev).finally(() => inflight.delete(p))
          inflight.add(p)
        }
      }
    }
    return ev
  }

  const entityName: Record<string, string> = {
    customers: 'customer',
    addresses: 'address',
    businesses: 'business',
    products: 'product',
    prices: 'price',
    discounts: 'discount',
    transactions: 'transaction',
    subscriptions: 'subscription',
    adjustments: 'adjustment',
  }

  function stamp(o: Obj, created: boolean): Obj {
    const now = new Date().toISOString()
    if (created) o.created_at = now
    o.updated_at = now
    return o
  }

  function requireFields(body: Record<string, unknown>, fields: string[]): void {
    const errors = fields
      .filter((f) => body[f] === undefined || body[f] === null || body[f] === '')
      .map((f) => ({ field: f, message: 'is required' }))
    if (errors.length)
      throw new HttpError(400, 'request_error', 'bad_request', 'Invalid request.', errors)
  }

  function checkCustomData(body: Record<string, unknown>): void {
    const cd = body.custom_data
    if (cd === undefined || cd === null) return
    if (typeof cd !== 'object' || Array.isArray(cd) || Object.keys(cd).length === 0) {
      throw new HttpError(
        400,
        'request_error',
        'bad_request',
        'custom_data must be an object with at least one key',
        [{ field: 'custom_data', message: 'must be a non-empty object' }],
      )
    }
  }

  function get(coll: keyof typeof PREFIX, id: string): Obj {
    const o = (state as unknown as Record<string, Map<string, Obj>>)[coll]?.get(id)
    if (!o) throw new HttpError(404, 'request_error', 'entity_not_found', `Entity ${id} not found`)
    return o
  }

  function totals(items: Array<Record<string, unknown>>, discountId: unknown, currency: string) {
    let subtotal = 0n
    for (const it of items) {
      const price = state.prices.get(String(it.price_id))
      if (!price)
        throw new HttpError(
          400,
          'request_error',
          'bad_request',
          `price ${String(it.price_id)} not found`,
          [{ field: 'items', message: 'unknown price' }],
        )
      const unit = (price.unit_price as { amount: string }).amount
      subtotal += BigInt(unit) * BigInt(Number(it.quantity ?? 1))
    }
    let discount = 0n
    if (typeof discountId === 'string' && discountId) {
      const d = get('discounts', discountId)
      if (d.type === 'percentage') {
        const [w, f = ''] = String(d.amount).split('.')
        const hundredths = BigInt(w!) * 100n + BigInt((f + '00').slice(0, 2))
        discount = (subtotal * hundredths) / 10000n
      } else discount = BigInt(String(d.amount)) > subtotal ? subtotal : BigInt(String(d.amount))
    }
    const total = subtotal - discount
    return {
      subtotal: String(subtotal),
      discount: String(discount),
      tax: '0',
      total: String(total),
      grand_total: String(total),
      balance: String(total),
      credit: '0',
      fee: null,
      earnings: null,
      currency_code: currency,
    }
  }

  /**
   * A transaction's `details` as Paddle gives them: totals, the tax rates used and one line
   * item per item (with its product), so Paddle's own SDK parses it. Tax is 0 here: the
   * fake computes no tax.
   */
  function transactionDetails(
    items: Array<Record<string, unknown>>,
    discountId: unknown,
    currency: string,
  ): Record<string, unknown> {
    const t = totals(items, discountId, currency)
    const lineItems = items.map((it) => {
      const price = get('prices', String(it.price_id))
      const q = Number(it.quantity ?? 1)
      const unit = (price.unit_price as { amount: string }).amount
      const sub = String(BigInt(unit) * BigInt(q))
      return {
        id: paddleId('txnitm'),
        price_id: price.id,
        quantity: q,
        proration: null,
        tax_rate: '0',
        unit_totals: { subtotal: unit, discount: '0', tax: '0', total: unit },
        totals: { subtotal: sub, discount: '0', tax: '0', total: sub },
        product: state.products.get(String(price.product_id)) ?? null,
      }
    })
    return {
      tax_rates_used: [
        {
          tax_rate: '0',
          totals: { subtotal: t.subtotal, discount: t.discount, tax: '0', total: t.total },
        },
      ],
      totals: t,
      adjusted_totals: {
        subtotal: t.subtotal,
        tax: '0',
        total: t.total,
        grand_total: t.grand_total,
        fee: '0',
        earnings: '0',
        currency_code: currency,
      },
      payout_totals: null,
      adjusted_payout_totals: null,
      line_items: lineItems,
    }
  }

  /** A subscription item as Paddle shows it: its price and product objects, timestamps. */
  function subscriptionItem(priceId: string, quantity: number, now = new Date().toISOString()) {
    const price = get('prices', priceId)
    return {
      status: 'active',
      quantity,
      recurring: price.billing_cycle != null,
      created_at: now,
      updated_at: now,
      previously_billed_at: null,
      next_billed_at: null,
      trial_dates: null,
      price,
      product: state.products.get(String(price.product_id)) ?? null,
    }
  }

  function maybeCreateSubscription(txn: Obj): Obj | undefined {
    // Paddle makes a subscription from a billed invoice (manual) transaction, or from a
    // card (automatic) one once it is paid (completed)
    const invoice =
      txn.status === 'billed' && txn.collection_mode === 'manual' && txn.billing_details
    const paid = txn.status === 'completed' && txn.collection_mode === 'automatic'
    if ((!invoice && !paid) || txn.subscription_id) return undefined
    const items = (txn.items as Array<Record<string, unknown>>).map(
      (it) => ({ ...it, price: state.prices.get(String(it.price_id)) }) as Record<string, unknown>,
    )
    const recurring = items.filter((it) => it.price && (it.price as Obj).billing_cycle)
    if (recurring.length === 0) return undefined
    const cycle = (recurring[0]!.price as Obj).billing_cycle as {
      interval: string
      frequency: number
    }
    const now = new Date()
    const end = new Date(now)
    if (cycle.interval === 'year') end.setUTCFullYear(end.getUTCFullYear() + cycle.frequency)
    else if (cycle.interval === 'month') end.setUTCMonth(end.getUTCMonth() + cycle.frequency)
    else if (cycle.interval === 'week') end.setUTCDate(end.getUTCDate() + 7 * cycle.frequency)
    else end.setUTCDate(end.getUTCDate() + cycle.frequency)
    const sub: Obj = stamp(
      {
        id: paddleId('sub'),
        status: 'active',
        customer_id: txn.customer_id,
        address_id: txn.address_id,
        business_id: txn.business_id ?? null,
        currency_code: txn.currency_code,
        collection_mode: txn.collection_mode,
        billing_details: txn.billing_details ?? null,
        billing_cycle: cycle,
        current_billing_period: { starts_at: now.toISOString(), ends_at: end.toISOString() },
        next_billed_at: end.toISOString(),
        started_at: now.toISOString(),
        first_billed_at: now.toISOString(),
        paused_at: null,
        canceled_at: null,
        scheduled_change: null,
        discount: txn.discount_id
          ? { id: txn.discount_id, starts_at: now.toISOString(), ends_at: null }
          : null,
        items: recurring.map((it) =>
          subscriptionItem(String((it.price as Obj).id), Number(it.quantity ?? 1)),
        ),
        management_urls: null,
        custom_data: txn.custom_data ?? null,
        transaction_id: txn.id,
      },
      true,
    )
    state.subscriptions.set(sub.id, sub)
    // Like Paddle, the transaction answer does not carry the new subscription yet; it shows
    // on GET /transactions/{id} and in subscription.created (which carries transaction_id).
    txn._subscription_id = sub.id
    emit('subscription.created', sub)
    return sub
  }

  function publicTxn(t: Obj): Obj {
    const { _subscription_id, ...rest } = t
    return {
      ...rest,
      subscription_id:
        (_subscription_id as string | undefined) ?? (t.subscription_id as string | null) ?? null,
    }
  }

  function list(
    all: Obj[],
    q: URLSearchParams,
    pathname: string,
    perPageCap: number,
  ): { data: Obj[]; meta: Record<string, unknown> } {
    const statusFilter = q.get('status')
    let rows = all
    if (statusFilter) {
      const allowed = new Set(statusFilter.split(','))
      rows = rows.filter((o) => allowed.has(String(o.status)))
    }
    const desc = (q.get('order_by') ?? 'id[ASC]') === 'id[DESC]'
    rows = [...rows].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    if (desc) rows.reverse()
    const after = q.get('after')
    if (after) rows = rows.filter((o) => (desc ? o.id < after : o.id > after))
    const perPage = Math.min(
      perPageCap,
      Math.max(1, Number(q.get('per_page') ?? perPageCap) || perPageCap),
    )
    const page = rows.slice(0, perPage)
    const hasMore = rows.length > perPage
    const nextQ = new URLSearchParams(q)
    if (page.length) nextQ.set('after', page[page.length - 1]!.id)
    return {
      data: page,
      meta: {
        request_id: randomUUIDish(),
        pagination: {
          per_page: perPage,
          next: `${url}${pathname}?${nextQ.toString()}`,
          has_more: hasMore,
          estimated_total: rows.length,
        },
      },
    }
  }

  /**
   * GET /events as Paddle documents it (the event stream): every event generated, by
   * event_id (`order_by=id[ASC|DESC]`, default ASC), `after` an event id, `per_page`
   * default 50 and at most 200, `event_type` a comma-separated filter; each item is
   * `{event_id, event_type, occurred_at, data}` (no notification: the stream is not a
   * delivery).
   */
  function listEvents(
    q: URLSearchParams,
    pathname: string,
  ): { data: unknown[]; meta: Record<string, unknown> } {
    const types = q.get('event_type')
    const wanted = types ? new Set(types.split(',')) : null
    const desc = (q.get('order_by') ?? 'id[ASC]') === 'id[DESC]'
    let rows = state.events.filter((e) => !wanted || wanted.has(e.event_type))
    rows = [...rows].sort((a, b) =>
      a.event_id < b.event_id ? -1 : a.event_id > b.event_id ? 1 : 0,
    )
    if (desc) rows.reverse()
    const after = q.get('after')
    if (after) rows = rows.filter((e) => (desc ? e.event_id < after : e.event_id > after))
    const cap = Math.min(200, maxPerPage)
    const perPage = Math.min(cap, Math.max(1, Number(q.get('per_page') ?? 50) || 50))
    const page = rows.slice(0, perPage)
    const nextQ = new URLSearchParams(q)
    if (page.length) nextQ.set('after', page[page.length - 1]!.event_id)
    return {
      data: page.map((e) => ({
        event_id: e.event_id,
        event_type: e.event_type,
        occurred_at: e.occurred_at,
        data: structuredClone(e.data),
      })),
      meta: {
        request_id: randomUUIDish(),
        pagination: {
          per_page: perPage,
          next: `${url}${pathname}?${nextQ.toString()}`,
          has_more: rows.length > perPage,
          estimated_total: rows.length,
        },
      },
    }
  }

  function randomUUIDish(): string {
    return randomBytes(16)
      .toString('hex')
      .replace(/^(.{8})(.{4})(.{4})(.{4})(.{12})$/, '$1-$2-$3-$4-$5')
  }

  function createIn(coll: string, o: Obj): Obj {
    const map = (state as unknown as Record<string, Map<string, Obj>>)[coll]!
    map.set(o.id, stamp(o, true))
    emit(`${entityName[coll]}.created`, o)
    return o
  }

  function patchIn(coll: string, o: Obj, body: Record<string, unknown>, allowed: string[]): Obj {
    checkCustomData(body)
    for (const k of allowed) if (body[k] !== undefined) o[k] = body[k]
    stamp(o, false)
    emit(`${entityName[coll]}.updated`, o)
    return o
  }

  // --- routing ---------------------------------------------------------------------------
  function handle(
    method: string,
    pathname: string,
    q: URLSearchParams,
    body: Record<string, unknown>,
  ): { status: number; data: unknown; meta?: Record<string, unknown> } {
    const seg = pathname.split('/').filter(Boolean)
    const [coll, id, sub, subId] = seg
    const ok = (data: unknown, status = 200) => ({ status, data })
    if (coll === 'events' && !id && method === 'GET')
      return { status: 200, ...listEvents(q, pathname) }
    const collections = [
      'customers',
      'products',
      'prices',
      'discounts',
      'transactions',
      'subscriptions',
      'adjustments',
    ]
    if (!coll || !collections.includes(coll))
      throw new HttpError(404, 'request_error', 'not_found', `No route ${method} ${pathname}`)

    // nested: /customers/{id}/addresses|businesses[/{id}]
    if (coll === 'customers' && id && (sub === 'addresses' || sub === 'businesses')) {
      const cust = get('customers', id)
      const map = state[sub]
      if (method === 'GET' && !subId) {
        return {
          status: 200,
          ...list(
            [...map.values()].filter((o) => o.customer_id === cust.id),
            q,
            pathname,
            maxPerPage,
          ),
        }
      }
      if (method === 'POST' && !subId) {
        checkCustomData(body)
        if (sub === 'addresses') {
          requireFields(body, ['country_code'])
          return ok(
            createIn('addresses', {
              id: paddleId('add'),
              customer_id: cust.id,
              description: null,
              first_line: null,
              second_line: null,
              city: null,
              postal_code: null,
              region: null,
              ...pick(body, [
                'description',
                'first_line',
                'second_line',
                'city',
                'postal_code',
                'region',
                'country_code',
                'custom_data',
              ]),
              status: 'active',
            }),
            201,
          )
        }
        requireFields(body, ['name'])
        return ok(
          createIn('businesses', {
            id: paddleId('biz'),
            customer_id: cust.id,
            company_number: null,
            tax_identifier: null,
            contacts: [],
            ...pick(body, ['name', 'company_number', 'tax_identifier', 'contacts', 'custom_data']),
            status: 'active',
          }),
          201,
        )
      }
      const o = get(sub, subId ?? '')
      if (o.customer_id !== cust.id)
        throw new HttpError(404, 'request_error', 'entity_not_found', `Entity ${subId} not found`)
      if (method === 'GET') return ok(o)
      if (method === 'PATCH') {
        const allowed =
          sub === 'addresses'
            ? [
                'description',
                'first_line',
                'second_line',
                'city',
                'postal_code',
                'region',
                'country_code',
                'custom_data',
                'status',
              ]
            : ['name', 'company_number', 'tax_identifier', 'contacts', 'custom_data', 'status']
        return ok(patchIn(sub, o, body, allowed))
      }
      throw new HttpError(405, 'request_error', 'method_not_allowed', `${method} not allowed`)
    }
    if (
      sub &&
      coll === 'subscriptions' &&
      id &&
      method === 'POST' &&
      ['cancel', 'pause', 'resume', 'activate'].includes(sub)
    ) {
      const s = get('subscriptions', id)
      if (s.status === 'canceled')
        throw new HttpError(
          400,
          'request_error',
          'subscription_locked_canceled',
          'subscription is canceled',
        )
      return ok(lifecycle(s, sub, body))
    }
    if (sub)
      throw new HttpError(404, 'request_error', 'not_found', `No route ${method} ${pathname}`)

    const map = (state as unknown as Record<string, Map<string, Obj>>)[coll]!
    if (!id && method === 'GET') {
      const perPageCap =
        coll === 'transactions'
          ? Math.min(30, maxPerPage)
          : coll === 'adjustments'
            ? Math.min(50, maxPerPage)
            : maxPerPage
      const statusDefault =
        ['customers', 'products', 'prices', 'discounts', 'addresses', 'businesses'].includes(
          coll,
        ) && !q.get('status')
      const qq = new URLSearchParams(q)
      if (statusDefault) qq.set('status', 'active')
      let rows = [...map.values()]
      const txnFilter = q.get('transaction_id')
      if (txnFilter) {
        const ids = new Set(txnFilter.split(','))
        rows = rows.filter((o) => ids.has(String(o.transaction_id)))
      }
      const res = list(rows, qq, pathname, perPageCap)
      if (coll === 'transactions') res.data = res.data.map(publicTxn)
      return { status: 200, ...res }
    }
    if (id && method === 'GET') {
      const o = get(coll, id)
      return ok(coll === 'transactions' ? publicTxn(o) : o)
    }
    if (!id && method === 'POST') {
      checkCustomData(body)
      switch (coll) {
        case 'customers': {
          requireFields(body, ['email'])
          const email = String(body.email).toLowerCase()
          const dup = [...state.customers.values()].find(
            (c) => String(c.email).toLowerCase() === email,
          )
          if (dup)
            throw new HttpError(
              409,
              'request_error',
              'customer_already_exists',
              `customer email conflicts with customer of id ${dup.id}`,
            )
          return ok(
            createIn('customers', {
              id: paddleId('ctm'),
              name: null,
              locale: 'en',
              marketing_consent: false,
              ...pick(body, ['email', 'name', 'locale', 'custom_data']),
              status: 'active',
              import_meta: null,
            }),
            201,
          )
        }
        case 'products':
          requireFields(body, ['name', 'tax_category'])
          return ok(
            createIn('products', {
              id: paddleId('pro'),
              description: null,
              type: 'standard',
              image_url: null,
              ...pick(body, [
                'name',
                'description',
                'type',
                'tax_category',
                'image_url',
                'custom_data',
              ]),
              status: 'active',
            }),
            201,
          )
        case 'prices': {
          requireFields(body, ['product_id', 'description', 'unit_price'])
          get('products', String(body.product_id))
          const up = body.unit_price as { amount?: unknown; currency_code?: unknown }
          if (
            typeof up?.amount !== 'string' ||
            !MONEY.test(up.amount) ||
            typeof up.currency_code !== 'string'
          ) {
            throw new HttpError(400, 'request_error', 'bad_request', 'Invalid request.', [
              { field: 'unit_price', message: 'amount must be a string of minor units' },
            ])
          }
          return ok(
            createIn('prices', {
              id: paddleId('pri'),
              name: null,
              billing_cycle: null,
              trial_period: null,
              tax_mode: 'account_setting',
              quantity: { minimum: 1, maximum: 100 },
              ...pick(body, [
                'product_id',
                'description',
                'name',
                'unit_price',
                'billing_cycle',
                'trial_period',
                'tax_mode',
                'quantity',
                'custom_data',
              ]),
              status: 'active',
            }),
            201,
          )
        }
        case 'discounts': {
          requireFields(body, ['description', 'type', 'amount'])
          if ((body.type === 'flat' || body.type === 'flat_per_seat') && !body.currency_code) {
            throw new HttpError(400, 'request_error', 'bad_request', 'Invalid request.', [
              { field: 'currency_code', message: 'required for flat discounts' },
            ])
          }
          return ok(
            createIn('discounts', {
              id: paddleId('dsc'),
              code: null,
              enabled_for_checkout: false,
              recur: true,
              maximum_recurring_intervals: null,
              usage_limit: null,
              expires_at: null,
              currency_code: null,
              ...pick(body, DISCOUNT_FIELDS),
              status: 'active',
              times_used: 0,
            }),
            201,
          )
        }
        case 'transactions': {
          requireFields(body, ['items'])
          const items = body.items as Array<Record<string, unknown>>
          if (!Array.isArray(items) || items.length === 0)
            throw new HttpError(400, 'request_error', 'bad_request', 'Invalid request.', [
              { field: 'items', message: 'must not be empty' },
            ])
          const currency = String(body.currency_code ?? 'USD')
          const requested = typeof body.status === 'string' ? body.status : undefined
          if (requested && requested !== 'billed')
            throw new HttpError(
              400,
              'request_error',
              'bad_request',
              'status may only be billed on create',
              [{ field: 'status', message: 'invalid' }],
            )
          if (requested === 'billed' && (!body.customer_id || !body.address_id)) {
            throw new HttpError(
              400,
              'request_error',
              'transaction_required_customer_for_billed',
              'a billed transaction needs customer_id and address_id',
            )
          }
          if (body.customer_id) get('customers', String(body.customer_id))
          const t: Obj = {
            id: paddleId('txn'),
            status: requested ?? (body.customer_id && body.address_id ? 'ready' : 'draft'),
            customer_id: body.customer_id ?? null,
            address_id: body.address_id ?? null,
            business_id: body.business_id ?? null,
            discount_id: body.discount_id ?? null,
            currency_code: currency,
            origin: 'api',
            collection_mode: body.collection_mode ?? 'automatic',
            billing_details: body.billing_details ?? null,
            items: items.map((it) => ({
              price_id: it.price_id,
              quantity: it.quantity ?? 1,
              proration: null,
              price: get('prices', String(it.price_id)),
            })),
            details: transactionDetails(items, body.discount_id, currency),
            payments: [],
            invoice_id: null,
            invoice_number: null,
            billing_period: null,
            checkout: { url: null as string | null },
            revised_at: null,
            billed_at: requested === 'billed' ? new Date().toISOString() : null,
            custom_data: body.custom_data ?? null,
            subscription_id: null,
          }
          // a card transaction gets Paddle's checkout link (its default payment link + _ptxn)
          if (t.collection_mode === 'automatic')
            (t.checkout as { url: string | null }).url =
              `https://pay.fake-paddle.invalid/checkout?_ptxn=${t.id}`
          createIn('transactions', t)
          if (t.status === 'billed') emit('transaction.billed', publicTxn(t))
          maybeCreateSubscription(t)
          return ok({ ...publicTxn(t), subscription_id: null }, 201)
        }
        case 'adjustments': {
          requireFields(body, ['action', 'transaction_id', 'reason'])
          const t = get('transactions', String(body.transaction_id))
          const full = body.type === 'full'
          const items = Array.isArray(body.items)
            ? (body.items as Array<Record<string, unknown>>)
            : []
          if (!full && items.length === 0) {
            throw new HttpError(400, 'request_error', 'bad_request', 'Invalid request.', [
              { field: 'items', message: 'required for partial adjustments' },
            ])
          }
          const txnTotal = String(
            (t.details as { totals?: { total?: string } } | undefined)?.totals?.total ?? '0',
          )
          let total = 0n
          for (const it of items) total += BigInt(String(it.amount ?? '0'))
          return ok(
            createIn('adjustments', {
              id: paddleId('adj'),
              type: 'partial',
              ...pick(body, ['action', 'transaction_id', 'reason', 'type']),
              items: items.map((it) => ({
                id: paddleId('adjitm'),
                item_id: it.item_id,
                type: it.type ?? 'partial',
                amount: it.amount ?? null,
                proration: null,
                totals: {
                  subtotal: String(it.amount ?? '0'),
                  tax: '0',
                  total: String(it.amount ?? '0'),
                },
              })),
              totals: {
                subtotal: full ? txnTotal : String(total),
                tax: '0',
                total: full ? txnTotal : String(total),
                fee: '0',
                earnings: '0',
                currency_code: t.currency_code,
              },
              payout_totals: null,
              credit_applied_to_balance: null,
              subscription_id: t._subscription_id ?? null,
              customer_id: t.customer_id,
              currency_code: t.currency_code,
              status: 'pending_approval',
            }),
            201,
          )
        }
        default:
          throw new HttpError(
            405,
            'request_error',
            'method_not_allowed',
            `POST ${pathname} is not allowed`,
          )
      }
    }
    if (id && method === 'PATCH') {
      const o = get(coll, id)
      switch (coll) {
        case 'customers': {
          const dup = body.email
            ? [...state.customers.values()].find(
                (c) =>
                  c.id !== o.id &&
                  String(c.email).toLowerCase() === String(body.email).toLowerCase(),
              )
            : undefined
          if (dup) {
            throw new HttpError(
              409,
              'request_error',
              'customer_already_exists',
              `customer email conflicts with customer of id ${dup.id}`,
            )
          }
          return ok(patchIn(coll, o, body, ['email', 'name', 'locale', 'custom_data', 'status']))
        }
        case 'products':
          return ok(
            patchIn(coll, o, body, [
              'name',
              'description',
              'type',
              'tax_category',
              'image_url',
              'custom_data',
              'status',
            ]),
          )
        case 'prices':
          return ok(
            patchIn(coll, o, body, [
              'description',
              'name',
              'unit_price',
              'billing_cycle',
              'trial_period',
              'tax_mode',
              'quantity',
              'custom_data',
              'status',
            ]),
          )
        case 'discounts':
          return ok(patchIn(coll, o, body, [...DISCOUNT_FIELDS, 'status']))
        case 'transactions': {
          if (body.status !== undefined && body.status !== 'billed' && body.status !== 'canceled') {
            throw new HttpError(
              400,
              'request_error',
              'bad_request',
              'status may only be billed or canceled',
              [{ field: 'status', message: 'invalid' }],
            )
          }
          patchIn(coll, o, body, [
            'customer_id',
            'address_id',
            'business_id',
            'discount_id',
            'collection_mode',
            'billing_details',
            'items',
            'custom_data',
            'status',
          ])
          o.details = {
            totals: totals(
              o.items as Array<Record<string, unknown>>,
              o.discount_id,
              String(o.currency_code),
            ),
          }
          if (body.status === 'billed') {
            o.billed_at = new Date().toISOString()
            emit('transaction.billed', publicTxn(o))
            maybeCreateSubscription(o)
          }
          return ok(publicTxn(o))
        }
        case 'subscriptions': {
          if (o.status === 'canceled')
            throw new HttpError(
              400,
              'request_error',
              'subscription_locked_canceled',
              'subscription is canceled',
            )
          const items = body.items
          if (items !== undefined) {
            // Paddle: proration_billing_mode is required when items change
            if (typeof body.proration_billing_mode !== 'string')
              throw new HttpError(
                400,
                'request_error',
                'invalid_field',
                'proration_billing_mode is required when updating items',
                [{ field: 'proration_billing_mode', message: 'required when items are sent' }],
              )
            if (!Array.isArray(items) || items.length === 0)
              throw new HttpError(
                400,
                'request_error',
                'invalid_field',
                'items must not be empty',
                [{ field: 'items', message: 'at least one item' }],
              )
            o.items = (items as Array<{ price_id: string; quantity?: number }>).map((it) =>
              subscriptionItem(String(it.price_id), it.quantity ?? 1),
            )
          }
          if (body.discount !== undefined) {
            const d = body.discount as { id?: string } | null
            o.discount = d
              ? {
                  id: get('discounts', String(d.id)).id,
                  starts_at: new Date().toISOString(),
                  ends_at: null,
                }
              : null
          }
          return ok(
            patchIn(coll, o, body, [
              'custom_data',
              'billing_details',
              'next_billed_at',
              'address_id',
              'business_id',
              'scheduled_change',
            ]),
          )
        }
        default:
          throw new HttpError(
            405,
            'request_error',
            'method_not_allowed',
            `PATCH ${pathname} is not allowed`,
          )
      }
    }
    throw new HttpError(
      405,
      'request_error',
      'method_not_allowed',
      `${method} ${pathname} is not allowed`,
    )
  }

  /**
   * POST /subscriptions/{id}/cancel|pause|resume|activate as Paddle does them: cancel and
   * pause default to the end of the billing period (a scheduled_change, status unchanged);
   * `effective_from: immediately` changes the status now. Resume takes `immediately` or a
   * date (a scheduled resume).
   */
  function lifecycle(s: Obj, action: string, body: Record<string, unknown>): Obj {
    const from = body.effective_from ?? (action === 'resume' ? undefined : 'next_billing_period')
    const periodEnd =
      ((s.current_billing_period as Record<string, unknown> | null)?.ends_at as
        string | undefined) ??
      (s.next_billed_at as string | null) ??
      new Date().toISOString()
    if (action === 'activate') return setStatus(s, 'active')
    if (action === 'resume') {
      if (from === undefined)
        throw new HttpError(400, 'request_error', 'invalid_field', 'effective_from is required', [
          { field: 'effective_from', message: 'required' },
        ])
      if (s.status !== 'paused')
        throw new HttpError(
          400,
          'request_error',
          'subscription_is_not_paused',
          'only a paused subscription can be resumed',
        )
      if (from === 'immediately') {
        s.scheduled_change = null
        return setStatus(s, 'active')
      }
      s.scheduled_change = { action: 'resume', effective_at: String(from), resume_at: null }
      stamp(s, false)
      emit('subscription.updated', s)
      return s
    }
    if (action === 'pause' && s.status === 'paused')
      throw new HttpError(400, 'request_error', 'subscription_is_paused', 'subscription is paused')
    const resumeAt = typeof body.resume_at === 'string' ? body.resume_at : null
    if (from === 'immediately') {
      s.scheduled_change =
        action === 'pause' && resumeAt
          ? { action: 'resume', effective_at: resumeAt, resume_at: null }
          : null
      return setStatus(s, action === 'cancel' ? 'canceled' : 'paused')
    }
    s.scheduled_change = {
      action,
      effective_at: periodEnd,
      resume_at: action === 'pause' ? resumeAt : null,
    }
    stamp(s, false)
    emit('subscription.updated', s)
    return s
  }

  /**
   * The customer pays a card transaction at checkout (a control of the fake, what Paddle's
   * checkout does): paid, then completed, and Paddle makes the subscription.
   */
  function pay(txnId: string): void {
    const t = get('transactions', txnId)
    if (t.collection_mode !== 'automatic' || !['ready', 'draft'].includes(String(t.status)))
      throw new Error(`transaction ${txnId} is not awaiting a card payment`)
    t.status = 'paid'
    stamp(t, false)
    emit('transaction.paid', publicTxn(t))
    t.status = 'completed'
    t.billed_at = new Date().toISOString()
    emit('transaction.completed', publicTxn(t))
    maybeCreateSubscription(t)
  }

  function setStatus(s: Obj, to: string): Obj {
    s.status = to
    const now = new Date().toISOString()
    if (to === 'canceled') s.canceled_at = now
    if (to === 'paused') s.paused_at = now
    if (to === 'active') s.paused_at = null
    stamp(s, false)
    emit('subscription.updated', s)
    const statusEvent: Record<string, string> = {
      canceled: 'subscription.canceled',
      past_due: 'subscription.past_due',
      paused: 'subscription.paused',
      active: 'subscription.activated',
      trialing: 'subscription.trialing',
    }
    if (statusEvent[to]) emit(statusEvent[to]!, s)
    return s
  }

  // Control endpoints for a fake run from the CLI (`clavitor paddle fake`): not Paddle's API.
  //   POST /__fake/fail {kind, count?, method?, path?, retryAfterS?, status?, code?}
  //   POST /__fake/clear            POST /__fake/webhooks {hold?, duplicate?}
  //   POST /__fake/flush {reverse?, duplicate?}        GET /__fake/state → counts
  //   POST /__fake/pay {transaction_id}   the customer pays a card transaction at checkout
  function control(
    method: string,
    pathname: string,
    chunks: Buffer[],
    send: (status: number, payload: unknown) => void,
  ): void {
    let body: Record<string, unknown> = {}
    try {
      body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {}
    } catch {
      return send(400, { error: 'body is not JSON' })
    }
    const what = pathname.slice('/__fake/'.length)
    if (method === 'GET' && what === 'state') {
      const counts: Record<string, number> = {}
      for (const k of Object.keys(PREFIX)) {
        const v = (state as unknown as Record<string, Map<string, Obj> | unknown[]>)[k]
        if (v instanceof Map) counts[k] = v.size
      }
      return send(200, {
        counts,
        requests: state.requests.length,
        events: state.events.length,
        outbox: outbox.length,
      })
    }
    if (method === 'POST' && what === 'fail') {
      const kinds = ['5xx', '429', 'hang', 'drop', 'reject', 'late']
      if (!kinds.includes(String(body.kind)))
        return send(400, { error: `kind must be one of ${kinds.join(', ')}` })
      const rule = body as unknown as FailureRule
      failures.push({
        ...rule,
        left:
          rule.count === undefined || rule.count === null
            ? 1
            : Number(rule.count) < 0
              ? Infinity
              : Number(rule.count),
      })
      return send(200, { ok: true })
    }
    if (method === 'POST' && what === 'pay') {
      try {
        pay(String(body.transaction_id))
      } catch (err) {
        return send(404, { error: (err as Error).message })
      }
      return send(200, { ok: true })
    }
    if (method === 'POST' && what === 'clear') {
      failures = []
      return send(200, { ok: true })
    }
    if (method === 'POST' && what === 'webhooks') {
      mode = { hold: Boolean(body.hold), duplicate: Boolean(body.duplicate) }
      return send(200, { ok: true, mode })
    }
    if (method === 'POST' && what === 'flush') {
      const evs = outbox.splice(0)
      if (body.reverse) evs.reverse()
      void (async () => {
        for (const ev of evs) {
          await deliver(ev)
          if (body.duplicate ?? mode.duplicate) await deliver(ev)
        }
      })()
      return send(200, { ok: true, events: evs.length })
    }
    return send(404, { error: `no control endpoint ${method} ${pathname}` })
  }

  /** Requests whose answer a 'drop' rule loses after the work. */
  const dropAnswer = new WeakSet<IncomingMessage>()
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://fake')
      const method = req.method ?? 'GET'
      state.requests.push({ method, path: u.pathname + u.search })
      const requestId = randomUUIDish()
      const send = (status: number, payload: unknown, headers: Record<string, string> = {}) => {
        const body = JSON.stringify(payload)
        res.writeHead(status, {
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
          ...headers,
        })
        res.end(body)
      }
      const sendError = (e: HttpError, headers: Record<string, string> = {}) =>
        send(
          e.status,
          {
            error: {
              type: e.type,
              code: e.code,
              detail: e.detail,
              documentation_url: `https://developer.paddle.com/errors/shared/${e.code}`,
              ...(e.errors ? { errors: e.errors } : {}),
            },
            meta: { request_id: requestId },
          },
          headers,
        )
      if (u.pathname.startsWith('/__fake/')) return control(method, u.pathname, chunks, send)
      // the auth scheme is case-insensitive (RFC 9110 §11.1): Paddle's own SDK sends `bearer`
      const auth = /^bearer (.+)$/i.exec(req.headers.authorization ?? '')
      if (opts.apiKey && auth?.[1] !== opts.apiKey) {
        return sendError(new HttpError(403, 'request_error', 'forbidden', 'Invalid API key'))
      }
      if (!auth) {
        return sendError(
          new HttpError(
            403,
            'request_error',
            'authentication_missing',
            'Authentication header missing',
          ),
        )
      }
      const rule = failures.find(
        (f) =>
          f.left > 0 &&
          (!f.method || f.method === method) &&
          (!f.path || u.pathname.startsWith(f.path)),
      )
      if (rule) {
        if (rule.kind === 'drop') dropAnswer.add(req)
        rule.left -= 1
        failures = failures.filter((f) => f.left > 0)
        if (rule.kind === '5xx')
          return sendError(
            new HttpError(
              rule.status ?? 503,
              'api_error',
              'internal_error',
              'Paddle is unavailable (injected)',
            ),
          )
        if (rule.kind === '429') {
          return sendError(
            new HttpError(
              429,
              'request_error',
              'too_many_requests',
              'Too many requests (injected)',
            ),
            { 'retry-after': String(rule.retryAfterS ?? 60) },
          )
        }
        if (rule.kind === 'reject') {
          return sendError(
            new HttpError(
              rule.status ?? 400,
              'request_error',
              rule.code ?? 'bad_request',
              'Invalid request (injected)',
              [{ field: 'name', message: 'rejected (injected)' }],
            ),
          )
        }
        if (rule.kind === 'hang') return // never answer; the client times out, close() destroys the socket
        if (rule.kind === 'late') {
          // Paddle got the request but does the work only later, typically after the
          // client's timeout: the object appears after the client has given up on it.
          const p: Promise<void> = new Promise<void>((resolve) =>
            setTimeout(() => {
              try {
                work()
              } finally {
                resolve()
              }
            }, rule.delayMs ?? 1000),
          ).finally(() => late.delete(p))
          late.add(p)
          return
        }
      }
      work()
    })
    function work(): void {
      const u = new URL(req.url ?? '/', 'http://fake')
      const method = req.method ?? 'GET'
      const requestId = randomUUIDish()
      const send = (status: number, payload: unknown) => {
        if (res.destroyed || res.writableEnded) return // the client gave up (late)
        const body = JSON.stringify(payload)
        res.writeHead(status, {
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
        })
        res.end(body)
      }
      const sendError = (e: HttpError) =>
        send(e.status, {
          error: {
            type: e.type,
            code: e.code,
            detail: e.detail,
            documentation_url: `https://developer.paddle.com/errors/shared/${e.code}`,
            ...(e.errors ? { errors: e.errors } : {}),
          },
          meta: { request_id: requestId },
        })
      let parsed: Record<string, unknown> = {}
      if (chunks.length) {
        try {
          parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'))
        } catch {
          return sendError(
            new HttpError(400, 'request_error', 'invalid_json', 'Request body is not valid JSON'),
          )
        }
      }
      try {
        const out = handle(method, u.pathname, u.searchParams, parsed)
        if (dropAnswer.has(req)) {
          // The work is done (state changed, events emitted); the answer is lost.
          req.socket.destroy()
          return
        }
        send(out.status, { data: out.data, meta: out.meta ?? { request_id: requestId } })
      } catch (e) {
        if (e instanceof HttpError) return sendError(e)
        return sendError(new HttpError(500, 'api_error', 'internal_error', (e as Error).message))
      }
    }
  })
  server.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve())
  })
  const addr = server.address() as AddressInfo
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address
  url = `http://${host}:${addr.port}`

  return {
    url,
    state,
    secret,
    failNext(r) {
      const rule = typeof r === 'string' ? { kind: r } : r
      failures.push({ ...rule, left: rule.count ?? 1 })
    },
    clearFailures() {
      failures = []
    },
    setWebhookMode(m) {
      mode = { ...m }
    },
    async flushWebhooks(o = {}) {
      const evs = outbox.splice(0)
      if (o.reverse) evs.reverse()
      const statuses: number[] = []
      for (const ev of evs) {
        statuses.push(await deliver(ev))
        if (o.duplicate ?? mode.duplicate) statuses.push(await deliver(ev))
      }
      return statuses
    },
    sign,
    payTransaction(id) {
      const before = state.events.length
      pay(id)
      return state.events.slice(before)
    },
    setSubscriptionStatus(id, status) {
      const before = state.events.length
      setStatus(get('subscriptions', id), status)
      return state.events.slice(before)
    },
    async settle() {
      while (late.size) await Promise.allSettled([...late])
    },
    countByCustomId(coll, ourId) {
      return [...state[coll].values()].filter(
        (o) => (o.custom_data as Record<string, unknown> | null)?.clavitor_id === ourId,
      ).length
    },
    async close() {
      while (late.size) await Promise.allSettled([...late])
      await Promise.allSettled([...inflight])
      for (const s of sockets) s.destroy()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}

function pick(o: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const k of keys) if (o[k] !== undefined) out[k] = o[k]
  return out
}
