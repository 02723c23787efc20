// MSP margins everywhere (lib/billing/margins.ts through Billing.applyMargins) and revenue
// net of adjustments (lib/billing/reports.ts), against the fake Paddle over real HTTP.
import t from 'tap'
import { listEvents } from '../../../lib/audit/log.js'
import { billingRig } from '../../fixtures/billing.js'

async function world(t: { teardown(fn: () => unknown): void }) {
  const rig = await billingRig({ audit: true })
  t.teardown(rig.close)
  const b = rig.billing
  const product = await b.create('products', { name: 'Vault', tax_category: 'saas' })
  const price = await b.create('prices', {
    product_id: product.id,
    description: 'monthly',
    unit_amount: '1000',
    currency_code: 'EUR',
    billing_interval: 'month',
  })
  const msp = await b.create('customers', { email: 'msp1@example.com', name: 'MSP 1' })
  const msp2 = await b.create('customers', { email: 'msp2@example.com', name: 'MSP 2' })
  const customer = await b.create('customers', {
    email: 'acme@example.com',
    parent_id: msp.id,
  })
  const dept = await b.create('customers', { email: 'it@acme.example.com', parent_id: customer.id })
  const address = await b.create('addresses', { customer_id: customer.id, country_code: 'DE' })
  const deptAddress = await b.create('addresses', { customer_id: dept.id, country_code: 'DE' })
  const subscribe = (customer_id: string, address_id: string, extra = {}) =>
    b.create('subscriptions', {
      customer_id,
      address_id,
      currency_code: 'EUR',
      items: [{ price_id: price.id, quantity: 1 }],
      ...extra,
    })
  const atPaddle = (row: { paddle_id: unknown }) =>
    rig.fake.state.subscriptions.get(String(row.paddle_id))!
  return { rig, b, price, msp, msp2, customer, dept, address, deptAddress, subscribe, atPaddle }
}

t.test('a margin set after subscriptions exist reaches them all; promotions stay', async (t) => {
  const w = await world(t)
  const { b } = w
  const sub = await w.subscribe(w.customer.id, w.address.id)
  const deptSub = await w.subscribe(w.dept.id, w.deptAddress.id)
  const promo = await b.create('discounts', {
    description: 'launch promo',
    type: 'percentage',
    amount: '5',
  })
  const promoSub = await w.subscribe(w.customer.id, w.address.id, { discount_id: promo.id })
  t.equal(sub.discount_id, null, 'no margin yet')

  const margin = await b.create(
    'discounts',
    { description: 'MSP 1 margin', type: 'percentage', amount: '20', msp_id: w.msp.id },
    { actor: 'hum_1' },
  )
  for (const s of [sub, deptSub]) {
    t.match(b.get('subscriptions', s.id), { discount_id: margin.id, state: 'synced' })
    t.match(w.atPaddle(s).discount, { id: margin.paddle_id }, `${s.id} at Paddle`)
  }
  t.match(b.get('subscriptions', promoSub.id), { discount_id: promo.id }, 'the promotion is kept')
  const ev = listEvents(w.rig.db, { kind: 'billing.margin' })
  t.equal(ev.length, 1)
  t.match(ev[0], { actor: 'hum_1', outcome: 'ok' })
  t.match(JSON.parse(String(ev[0]!.data)), {
    scope: w.msp.id,
    reason: `discounts ${margin.id}`,
    skipped: [[promoSub.id, 'promotion']],
  })
  t.equal(listEvents(w.rig.db, { kind: 'subscription.change' }).length, 2, 'each change audited')
  // nothing left to do: a second pass changes nothing
  const again = await b.applyMargins()
  t.same(again.changes, [])
  // a new subscription takes the margin at creation
  t.equal((await w.subscribe(w.customer.id, w.address.id)).discount_id, margin.id)
})

t.test('a customer moved to another MSP takes its margin (or loses one)', async (t) => {
  const w = await world(t)
  const { b } = w
  const m1 = await b.create('discounts', {
    description: 'm1',
    type: 'percentage',
    amount: '20',
    msp_id: w.msp.id,
  })
  const m2 = await b.create('discounts', {
    description: 'm2',
    type: 'percentage',
    amount: '30',
    msp_id: w.msp2.id,
  })
  const sub = await w.subscribe(w.customer.id, w.address.id)
  const deptSub = await w.subscribe(w.dept.id, w.deptAddress.id)
  t.equal(sub.discount_id, m1.id)
  const dry = await b.applyMargins({ dryRun: true })
  t.same(dry.changes, [], 'in line before the move')

  await b.update('customers', w.customer.id, { parent_id: w.msp2.id }, { actor: 'hum_1' })
  for (const s of [sub, deptSub]) {
    t.match(b.get('subscriptions', s.id), { discount_id: m2.id, state: 'synced' })
    t.match(w.atPaddle(s).discount, { id: m2.paddle_id })
  }
  // to an MSP with no margin: the old margin goes
  const msp3 = await b.create('customers', { email: 'msp3@example.com' })
  await b.update('customers', w.customer.id, { parent_id: msp3.id })
  t.equal(b.get('subscriptions', sub.id).discount_id, null)
  t.equal(w.atPaddle(sub).discount, null)
  // a rename is no move: nothing re-evaluated
  const before = listEvents(w.rig.db, { kind: 'billing.margin' }).length
  await b.update('customers', w.customer.id, { name: 'Acme' })
  t.equal(listEvents(w.rig.db, { kind: 'billing.margin' }).length, before)
})

t.test('a subscription with an action waiting is reported, not changed', async (t) => {
  const w = await world(t)
  const { b, rig } = w
  const sub = await w.subscribe(w.customer.id, w.address.id)
  rig.fake.failNext({ kind: '5xx', count: 5, path: `/subscriptions/${String(sub.paddle_id)}` })
  await b.changeSubscription(sub.id, { action: 'pause', effective_from: 'immediately' })
  rig.fake.clearFailures()
  await b.create('discounts', {
    description: 'm1',
    type: 'percentage',
    amount: '20',
    msp_id: w.msp.id,
  })
  const plan = await b.applyMargins({ dryRun: true })
  t.same(plan.skipped, [{ subscription_id: sub.id, reason: 'change_waiting' }])
  t.equal(b.get('subscriptions', sub.id).discount_id, null)
})

t.test('revenue is net of refunds and credits, per currency, within a period', async (t) => {
  const w = await world(t)
  const { b, rig } = w
  const margin = await b.create('discounts', {
    description: 'm1',
    type: 'percentage',
    amount: '20',
    msp_id: w.msp.id,
  })
  const txn = await b.create('transactions', {
    customer_id: w.customer.id,
    address_id: w.address.id,
    currency_code: 'EUR',
    status: 'billed',
    items: [{ price_id: w.price.id, quantity: 3 }],
  })
  t.equal(txn.total, '2400', '3 × 1000 − 20 %')
  const refund = await b.create('adjustments', {
    transaction_id: txn.id,
    action: 'refund',
    reason: 'one seat unused',
    type: 'partial',
    items: [{ item_id: 'txnitm_01', type: 'partial', amount: '800' }],
  })
  t.equal(refund.total, '800')
  let row = b.revenueByDiscount().find((r) => r.discount_id === margin.id)!
  t.match(
    row,
    { gross: '2400', adjustments: '0', revenue: '2400' },
    'a refund awaiting approval moves nothing',
  )
  // Paddle approves the refund (its status is Paddle's; the webhook would set it)
  rig.db.prepare("UPDATE adjustments SET status = 'approved' WHERE id = ?").run(refund.id)
  row = b.revenueByDiscount().find((r) => r.discount_id === margin.id)!
  t.match(row, {
    gross: '2400',
    adjustments: '-800',
    revenue: '1600',
    transactions: 1,
    adjusted: 1,
  })
  // a period that ends before the transaction: nothing; one around it: all of it
  const billedAt = Date.parse(
    String(b.get('transactions', txn.id).billed_at ?? new Date().toISOString()),
  )
  const iso = (ms: number) => new Date(ms).toISOString()
  t.same(b.revenueByDiscount({ to: iso(billedAt - 86_400_000) }), [])
  t.match(
    b.revenueByDiscount({ from: iso(billedAt - 86_400_000), to: iso(billedAt + 86_400_000) }),
    [{ revenue: '1600' }],
  )
  t.throws(() => b.revenueByDiscount({ from: 'last week' }), { code: 'CLA_ERR_INVALID_INPUT' })
})
