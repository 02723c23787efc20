// Paddle failing: our writes stand (pending, attempts, last_error), the retry worker with a
// fake clock past 5 minutes converges, and no retry ever creates a second object at
// Paddle, even when the first attempt did the work and its answer was lost.
import t from 'tap'
import { billingRig, seed } from '../../fixtures/billing.js'

const MIN = 60_000

t.test(
  'Paddle down for a while: rows pending, then the worker converges without duplicates',
  async (t) => {
    const rig = await billingRig()
    t.teardown(rig.close)
    const b = rig.billing
    rig.fake.failNext({ kind: '5xx', count: Infinity })
    const s = await seed(b)
    const sub = await b.create('subscriptions', {
      customer_id: s.customer.id,
      address_id: s.address.id,
      currency_code: 'EUR',
      items: [{ price_id: s.price.id }],
    })
    for (const row of [s.product, s.price, s.msp, s.discount, s.customer, s.address, sub]) {
      t.equal(row.state, 'pending', `${row.id} acknowledged but pending`)
      t.equal(row.paddle_id, null)
      t.ok(row.pending_since, 'pending_since set')
    }
    t.equal(s.product.attempts, 1)
    t.match(s.product.last_error, /CLA_ERR_PADDLE_UNAVAILABLE.*503/)
    t.match(
      s.price.last_error,
      /CLA_ERR_BILLING_DEPENDENCY_PENDING/,
      'a price waits for its product',
    )
    t.equal(b.pending().length, 8, '7 rows + the subscription transaction')

    rig.fake.clearFailures()
    let report = await b.retryOnce()
    t.equal(report.attempted, 0, 'rows younger than 5 minutes are left alone')

    rig.clock.advance(6 * MIN)
    report = await b.retryOnce()
    t.equal(report.pending, 0, JSON.stringify(report))
    t.same(b.pending(), [], 'everything converged')
    const subNow = b.get('subscriptions', sub.id)
    t.equal(subNow.state, 'synced')
    t.match(subNow.paddle_id, /^sub_/)
    for (const [coll, row] of [
      ['products', s.product],
      ['prices', s.price],
      ['customers', s.msp],
      ['customers', s.customer],
      ['discounts', s.discount],
      ['addresses', s.address],
      ['transactions', { id: String(subNow.origin_transaction_id) }],
    ] as const) {
      t.equal(rig.fake.countByCustomId(coll, row.id), 1, `${coll} ${row.id} exists once at Paddle`)
    }
    t.equal(rig.fake.state.subscriptions.size, 1)
  },
)

t.test(
  'the first attempt succeeded at Paddle but the answer was lost: no duplicates',
  async (t) => {
    const rig = await billingRig()
    t.teardown(rig.close)
    const b = rig.billing
    const s = await seed(b)

    rig.fake.failNext({ kind: 'drop', method: 'POST', path: '/customers' })
    const lost = await b.create('customers', { email: 'lost@example.com', parent_id: s.msp.id })
    t.equal(lost.state, 'pending')
    t.match(lost.last_error, /CLA_ERR_PADDLE_UNAVAILABLE/)
    t.equal(rig.fake.countByCustomId('customers', lost.id), 1, 'the fake did the work')

    rig.fake.failNext({ kind: 'drop', method: 'POST', path: '/transactions' })
    const sub = await b.create('subscriptions', {
      customer_id: s.customer.id,
      address_id: s.address.id,
      currency_code: 'EUR',
      items: [{ price_id: s.price.id, quantity: 2 }],
    })
    t.equal(sub.state, 'pending')
    t.equal(rig.fake.state.subscriptions.size, 1, 'the fake made the subscription')

    rig.fake.failNext({ kind: 'drop', method: 'POST', path: '/products' })
    const product = await b.create('products', { name: 'Lost product' })
    t.equal(product.state, 'pending')

    rig.clock.advance(6 * MIN)
    const report = await b.retryOnce()
    t.equal(report.failed, 0)
    t.same(b.pending(), [], 'converged')
    t.equal(rig.fake.countByCustomId('customers', lost.id), 1, 'still one customer')
    t.equal(rig.fake.countByCustomId('products', product.id), 1, 'still one product')
    t.equal(rig.fake.state.subscriptions.size, 1, 'still one subscription')
    t.equal(rig.fake.state.transactions.size, 1, 'still one transaction')
    const linked = b.get('subscriptions', sub.id)
    t.equal(linked.paddle_id, [...rig.fake.state.subscriptions.keys()][0])
    t.equal(
      b.get('customers', lost.id).paddle_id,
      [...rig.fake.state.customers.values()].find((c) => c.email === 'lost@example.com')?.id,
    )
  },
)

t.test('find-before-create follows pagination (id[DESC], next)', async (t) => {
  const rig = await billingRig({ fake: { maxPerPage: 2 } })
  t.teardown(rig.close)
  const b = rig.billing
  rig.fake.failNext({ kind: 'drop', method: 'POST', path: '/products' })
  const lost = await b.create('products', { name: 'first, answer lost' })
  for (let i = 0; i < 5; i++) await b.create('products', { name: `later ${i}` })
  rig.clock.advance(6 * MIN)
  await b.retryOnce()
  t.equal(b.get('products', lost.id).state, 'synced')
  t.equal(rig.fake.countByCustomId('products', lost.id), 1)
  const lists = rig.fake.state.requests.filter(
    (r) => r.method === 'GET' && r.path.startsWith('/products?'),
  )
  t.ok(lists.length >= 3, `walked ${lists.length} pages`)
  t.match(lists[0]?.path, /order_by=id%5BDESC%5D/)
  t.ok(
    lists.slice(1).every((r) => /after=pro_/.test(r.path)),
    'later pages follow next',
  )

  const seen: string[] = []
  for await (const page of rig.client.pages('/products', { per_page: '2' }))
    seen.push(...page.map((p) => p.id))
  t.equal(new Set(seen).size, 6, 'client.pages yields every product once')
})

t.test(
  'customers: 409 customer_already_exists adopts the existing one, or fails when it is another row of ours',
  async (t) => {
    const rig = await billingRig()
    t.teardown(rig.close)
    const b = rig.billing
    // made at Paddle directly (dashboard): same email, no clavitor_id
    const direct = await rig.client.post<{ id: string }>('/customers', { email: 'dup@example.com' })
    const adopted = await b.create('customers', { email: 'dup@example.com', name: 'Dup' })
    t.equal(adopted.state, 'synced')
    t.equal(adopted.paddle_id, direct.data.id, 'linked to the existing Paddle customer')
    t.equal(rig.fake.state.customers.size, 1)
    t.equal(
      (rig.fake.state.customers.get(direct.data.id)?.custom_data as Record<string, unknown>)
        .clavitor_id,
      adopted.id,
    )

    const second = await b.create('customers', { email: 'DUP@example.com' })
    t.equal(second.state, 'failed', 'another row of ours owns that email at Paddle')
    t.match(second.last_error, /CLA_ERR_BILLING_CONFLICT/)
    t.ok(second.failed_at)
  },
)

t.test(
  '429 with Retry-After: the row waits, the client refuses until then, the pass stops',
  async (t) => {
    const rig = await billingRig()
    t.teardown(rig.close)
    const b = rig.billing
    rig.fake.failNext({ kind: '429', retryAfterS: 120 })
    const p = await b.create('products', { name: 'rate limited' })
    t.equal(p.state, 'pending')
    t.match(p.last_error, /CLA_ERR_PADDLE_RATE_LIMITED/)
    const row = rig.db.prepare('SELECT next_attempt_at FROM products WHERE id = ?').get(p.id) as {
      next_attempt_at: number
    }
    t.ok(
      row.next_attempt_at >= (rig.clock.now() + 120_000) * 1000,
      'next attempt not before Retry-After',
    )
    t.ok(rig.client.blockedForMs() > 0, 'client blocked')
    const before = rig.fake.state.requests.length
    const q = await b.create('products', { name: 'while blocked' })
    t.equal(q.state, 'pending')
    t.equal(rig.fake.state.requests.length, before, 'no request sent while blocked')

    rig.clock.advance(6 * MIN) // past Retry-After and past the 5-minute threshold
    const report = await b.retryOnce()
    t.equal(report.synced, 2, JSON.stringify(report))

    // a 429 in the middle of a pass stops it
    rig.fake.failNext({ kind: '5xx', count: Infinity })
    await b.create('products', { name: 'a' })
    await b.create('products', { name: 'b' })
    rig.fake.clearFailures()
    rig.fake.failNext({ kind: '429', retryAfterS: 30 })
    rig.clock.advance(6 * MIN)
    const r2 = await b.retryOnce()
    t.equal(r2.attempted, 1, 'stopped after the 429')
    t.ok(r2.rateLimitedUntil, 'report says until when')
    rig.clock.advance(6 * MIN)
    const r3 = await b.retryOnce()
    t.equal(r3.synced, 2)
  },
)

t.test(
  'a hang past the client timeout leaves the row pending; backoff grows per attempt',
  async (t) => {
    const rig = await billingRig({ timeoutMs: 300, billing: { retry: { baseDelayMs: 10_000 } } })
    t.teardown(rig.close)
    const b = rig.billing
    rig.fake.failNext('hang')
    const p = await b.create('products', { name: 'slow' })
    t.equal(p.state, 'pending')
    t.match(p.last_error, /did not answer .* within 300 ms/)

    rig.fake.failNext({ kind: '5xx', count: Infinity })
    rig.clock.advance(6 * MIN)
    await b.retryOnce()
    const a = rig.db
      .prepare('SELECT attempts, next_attempt_at FROM products WHERE id = ?')
      .get(p.id) as { attempts: number; next_attempt_at: number }
    t.equal(a.attempts, 2)
    t.equal(a.next_attempt_at, (rig.clock.now() + 20_000) * 1000, 'second failure waits 2 × base')
    const r = await b.retryOnce()
    t.equal(r.attempted, 0, 'backoff respected')
    rig.fake.clearFailures()
    rig.clock.advance(20_000)
    t.equal((await b.retryOnce()).synced, 1)
  },
)

t.test('a 4xx that will never succeed is marked failed, shown, and not retried', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  rig.fake.failNext({ kind: 'reject', code: 'invalid_field' })
  const p = await b.create('products', { name: 'refused' })
  t.equal(p.state, 'failed')
  t.ok(p.failed_at)
  t.match(p.last_error, /CLA_ERR_PADDLE_REJECTED.*400 invalid_field.*request_id/)
  const shown = b.pending()
  t.equal(shown.length, 1)
  t.equal(shown[0]?.state, 'failed')
  rig.clock.advance(60 * MIN)
  t.equal((await b.retryOnce()).attempted, 0, 'never retried')
  // an edit is a new write: it is tried again
  const fixed = await b.update('products', p.id, { name: 'fixed' })
  t.equal(fixed.state, 'synced')
})

t.test('without Paddle configured the write stands and says why', async (t) => {
  const rig = await billingRig({ billing: { paddle: null } })
  t.teardown(rig.close)
  const p = await rig.billing.create('products', { name: 'offline' })
  t.equal(p.state, 'pending')
  t.match(p.last_error, /CLA_ERR_PADDLE_NOT_CONFIGURED/)
})

t.test('the token bucket keeps to the per-minute budget (clock-driven)', async (t) => {
  const { PaddleClient } = await import('../../../lib/billing/paddle-client.js')
  const { ManualClock } = await import('../../../lib/clock.js')
  const rig = await billingRig()
  t.teardown(rig.close)
  const clock = new ManualClock()
  const c = new PaddleClient({
    baseUrl: rig.fake.url,
    apiKey: 'pdl_sdbx_apikey_test',
    requestsPerMinute: 3,
    clock,
  })
  const start = clock.now()
  for (let i = 0; i < 5; i++) await c.get('/products')
  t.ok(
    clock.now() - start >= 40_000,
    `waited ${clock.now() - start} ms of clock time for 2 extra requests`,
  )
})

t.test('client errors carry Paddle code, type, request_id and status', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const err = await rig.client
    .get('/customers/ctm_00000000000000000000000000')
    .catch((e: unknown) => e)
  t.match(err, {
    code: 'CLA_ERR_PADDLE_REJECTED',
    details: {
      status: 404,
      code: 'entity_not_found',
      type: 'request_error',
      requestId: /^[0-9a-f-]{36}$/,
    },
  })
  const { PaddleClient } = await import('../../../lib/billing/paddle-client.js')
  const bad = new PaddleClient({ baseUrl: rig.fake.url, apiKey: 'wrong' })
  t.match(await bad.get('/products').catch((e: unknown) => e), {
    code: 'CLA_ERR_PADDLE_REJECTED',
    details: { status: 403 },
  })
  t.throws(() => new PaddleClient({ baseUrl: 'ftp://x', apiKey: 'k' }), {
    code: 'CLA_ERR_INVALID_OPTION',
  })
})

t.test(
  'two Billing instances on one database never push the same row twice (leases)',
  async (t) => {
    const rig = await billingRig()
    t.teardown(rig.close)
    const { openDb } = await import('../../../lib/db/open.js')
    const { Billing } = await import('../../../lib/billing/billing.js')
    const { join } = await import('node:path')
    const db2 = openDb(join(rig.dir, 'meta.db'))
    t.teardown(() => db2.close())
    const other = new Billing({ db: db2, paddle: rig.client, clock: rig.clock })

    // first attempts reach Paddle but the answers are lost
    rig.fake.failNext({ kind: 'drop', method: 'POST', path: '/products', count: 3 })
    const ids: string[] = []
    for (let i = 0; i < 3; i++)
      ids.push((await rig.billing.create('products', { name: `p${i}` })).id)
    rig.clock.advance(6 * MIN)
    const [a, b] = await Promise.all([rig.billing.retryOnce(), other.retryOnce()])
    t.equal(
      a.attempted + b.attempted,
      3,
      `each row tried once in total (${a.attempted} + ${b.attempted})`,
    )
    for (const id of ids) {
      t.equal(rig.fake.countByCustomId('products', id), 1, `${id} exists once at Paddle`)
      t.equal(rig.billing.get('products', id).state, 'synced')
    }

    // a lease held elsewhere (until it expires) keeps this process off the row
    rig.fake.failNext({ kind: '5xx' })
    const p = await rig.billing.create('products', { name: 'leased' })
    rig.db
      .prepare('INSERT INTO billing_leases (key, holder, until) VALUES (?, ?, ?)')
      .run(`products:${p.id}`, 'elsewhere', (rig.clock.now() + 10 * MIN) * 1000)
    rig.clock.advance(6 * MIN)
    await rig.billing.retryOnce()
    t.equal(rig.billing.get('products', p.id).attempts, 1, 'not tried while leased')
    rig.clock.advance(5 * MIN)
    await rig.billing.retryOnce()
    t.equal(rig.billing.get('products', p.id).state, 'synced', 'an expired lease is taken over')
  },
)
