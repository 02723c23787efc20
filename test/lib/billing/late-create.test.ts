// Issue 13 item 6: a create whose request timed out on our side but that Paddle applied
// late. A forced retry right after the timeout (`billing retry --once --force`) used to
// find nothing yet and create again: two Paddle objects with one clavitor_id (10 of 10).
// Products, prices, discounts and transactions have no natural key at Paddle, so nothing
// else stops the second one; a second transaction is a second invoice.
import t from 'tap'
import { billingRig, seed, type BillingRig } from '../../fixtures/billing.js'

const TIMEOUT_MS = 500
const LATE_MS = 800 // Paddle does the work this long after receiving it: after our timeout

/**
 * Waits (real time) until the late create has landed at the fake: a deadline of 30 s, not a
 * speed check (5 s was too short once on a machine loaded 12 deep).
 */
async function landed(rig: BillingRig, entity: Coll, id: string): Promise<void> {
  const deadline = Date.now() + 30_000
  while (rig.fake.countByCustomId(entity, id) === 0 && Date.now() < deadline) {
    await rig.fake.settle()
    await new Promise((r) => setTimeout(r, 50))
  }
  await rig.fake.settle()
}

type Coll = 'products' | 'prices' | 'discounts' | 'transactions'

/** One late create of `entity` then a forced retry at once; how many objects Paddle ends with. */
async function lateThenForced(
  rig: BillingRig,
  entity: Coll,
  input: Record<string, unknown>,
): Promise<{ id: string; count: number; state: string }> {
  rig.fake.failNext({ kind: 'late', method: 'POST', path: `/${entity}`, delayMs: LATE_MS })
  const row = await rig.billing.create(entity, input)
  if (row.state !== 'pending') throw new Error(`expected a pending row, got ${row.state}`)
  await rig.billing.retryOnce({ force: true })
  await landed(rig, entity, row.id)
  return {
    id: row.id,
    count: rig.fake.countByCustomId(entity, row.id),
    state: rig.billing.get(entity, row.id).state,
  }
}

t.test('late create + forced retry: 0 duplicates in N tries (was N of N)', async (t) => {
  const rig = await billingRig({ timeoutMs: TIMEOUT_MS })
  t.teardown(rig.close)
  const N = 10
  let duplicated = 0
  for (let i = 0; i < N; i++) {
    const r = await lateThenForced(rig, 'products', { name: `late ${i}` })
    if (r.count > 1) duplicated += 1
    t.ok(r.count >= 1, 'Paddle has the product')
  }
  t.comment(`duplicates: ${duplicated} of ${N}`)
  t.equal(duplicated, 0, `no product exists twice at Paddle (${duplicated} of ${N} did)`)
})

t.test('late create + forced retry: prices, discounts, transactions exist once', async (t) => {
  const rig = await billingRig({ timeoutMs: TIMEOUT_MS })
  t.teardown(rig.close)
  const s = await seed(rig.billing)
  const cases: Array<[Coll, Record<string, unknown>]> = [
    [
      'prices',
      {
        product_id: s.product.id,
        description: 'Vault, yearly',
        unit_amount: '12000',
        currency_code: 'EUR',
        billing_interval: 'year',
      },
    ],
    ['discounts', { description: 'Launch', type: 'flat', amount: '500', currency_code: 'EUR' }],
    [
      'transactions',
      {
        customer_id: s.customer.id,
        address_id: s.address.id,
        currency_code: 'EUR',
        items: [{ price_id: s.price.id, quantity: 1 }],
      },
    ],
  ]
  for (const [entity, input] of cases) {
    const r = await lateThenForced(rig, entity, input)
    t.equal(r.count, 1, `${entity} ${r.id} exists once at Paddle`)
  }
})

t.test('an unknown outcome is looked for, adopted once it lands, never sent again', async (t) => {
  const rig = await billingRig({ timeoutMs: TIMEOUT_MS })
  t.teardown(rig.close)
  const b = rig.billing
  rig.fake.failNext({ kind: 'late', method: 'POST', path: '/products', delayMs: LATE_MS })
  const row = await b.create('products', { name: 'late' })
  t.match(row, { state: 'pending', last_error: /CLA_ERR_PADDLE_UNAVAILABLE.*did not answer/ })
  const posts = () =>
    rig.fake.state.requests.filter((r) => r.method === 'POST' && r.path === '/products').length

  // forced, before it lands: looked for, not found, not sent again
  const r1 = await b.retryOnce({ force: true })
  t.match(r1, { attempted: 1, pending: 1, settling: 1, synced: 0 })
  t.equal(posts(), 1, 'no second POST')
  const waiting = b.get('products', row.id)
  t.match(waiting.last_error, /^CLA_ERR_BILLING_UNSETTLED: .*not sent again before/)
  const settleEnd = (rig.clock.now() - TIMEOUT_MS + 300_000) * 1000
  t.ok(
    Number(b.pending()[0]?.next_attempt_at) >= settleEnd - 1_000_000,
    'the worker waits for the settle window',
  )
  t.equal((await b.retryOnce()).attempted, 0, 'the unforced worker leaves it alone meanwhile')

  // it lands: the next (forced) pass adopts it
  await landed(rig, 'products', row.id)
  const r2 = await b.retryOnce({ force: true })
  t.match(r2, { attempted: 1, synced: 1, settling: 0 })
  const synced = b.get('products', row.id)
  t.equal(synced.paddle_id, [...rig.fake.state.products.keys()][0], 'adopted the late object')
  t.equal(posts(), 1, 'still one POST')
  t.equal(rig.fake.countByCustomId('products', row.id), 1)
  t.same(
    rig.db.prepare(`SELECT count(*) AS n FROM billing_leases`).get(),
    { n: 0 },
    'no lease or settle mark left',
  )
})

t.test('a create that never lands is sent again once the settle window has passed', async (t) => {
  const rig = await billingRig({ timeoutMs: TIMEOUT_MS, billing: { retry: { settleMs: 60_000 } } })
  t.teardown(rig.close)
  const b = rig.billing
  rig.fake.failNext({ kind: 'hang', method: 'POST', path: '/products' }) // never done
  const row = await b.create('products', { name: 'lost for good' })
  t.match((await b.retryOnce({ force: true })).settling, 1)
  rig.clock.advance(30_000)
  t.match((await b.retryOnce({ force: true })).settling, 1, 'still inside the window')
  rig.clock.advance(31_000)
  const r = await b.retryOnce({ force: true })
  t.match(r, { synced: 1, settling: 0 })
  t.equal(rig.fake.countByCustomId('products', row.id), 1)
})

t.test('a known outcome (503, connection refused) is retried at once when forced', async (t) => {
  const rig = await billingRig({ timeoutMs: TIMEOUT_MS })
  t.teardown(rig.close)
  const b = rig.billing
  rig.fake.failNext({ kind: '5xx', method: 'POST', path: '/products' })
  const row = await b.create('products', { name: 'refused by a 503' })
  t.match(await b.retryOnce({ force: true }), { synced: 1, settling: 0 })
  t.equal(rig.fake.countByCustomId('products', row.id), 1)

  const { PaddleClient } = await import('../../../lib/billing/paddle-client.js')
  const { startFakePaddle } = await import('../../../scripts/fake-paddle/server.js')
  const gone = await startFakePaddle()
  await gone.close() // nothing listens there now: ECONNREFUSED, the request was never sent
  const closed = new PaddleClient({ baseUrl: gone.url, apiKey: 'k' })
  t.match(await closed.post('/products', {}).catch((e: unknown) => e), {
    code: 'CLA_ERR_PADDLE_UNAVAILABLE',
    details: { code: 'network_error', unknownOutcome: false },
  })
  rig.fake.failNext({ kind: 'drop', method: 'POST', path: '/products' })
  t.match(
    await rig.client
      .post('/products', { name: 'x', tax_category: 'standard' })
      .catch((e: unknown) => e),
    {
      details: { unknownOutcome: true },
    },
  )
  rig.fake.failNext({ kind: '5xx', status: 504, method: 'POST', path: '/products' })
  t.match(
    await rig.client
      .post('/products', { name: 'y', tax_category: 'standard' })
      .catch((e: unknown) => e),
    {
      details: { status: 504, unknownOutcome: true },
    },
  )
})

t.test('a forced retry does not race a push in progress elsewhere', async (t) => {
  const rig = await billingRig({ timeoutMs: TIMEOUT_MS })
  t.teardown(rig.close)
  const b = rig.billing
  rig.fake.failNext({ kind: '5xx', method: 'POST', path: '/products' })
  const row = await b.create('products', { name: 'in flight elsewhere' })
  rig.db
    .prepare('INSERT INTO billing_leases (key, holder, until) VALUES (?, ?, ?)')
    .run(`products:${row.id}`, 'another process', (rig.clock.now() + 60_000) * 1000)
  t.match(await b.retryOnce({ force: true }), { attempted: 0 }, 'skipped while leased')
  t.equal(rig.fake.countByCustomId('products', row.id), 0)
})
