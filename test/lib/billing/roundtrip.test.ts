// Each entity round-trips: created here, created at the (fake) Paddle over real HTTP,
// Paddle's answer merged back (its id, status), pending cleared.
import t from 'tap'
import { billingRig, seed } from '../../fixtures/billing.js'

t.test('every entity round-trips through the fake Paddle', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const { product, price, msp, discount, customer, address } = await seed(b)

  for (const [name, row, prefix] of [
    ['product', product, 'pro_'],
    ['price', price, 'pri_'],
    ['msp', msp, 'ctm_'],
    ['discount', discount, 'dsc_'],
    ['customer', customer, 'ctm_'],
    ['address', address, 'add_'],
  ] as const) {
    t.equal(row.state, 'synced', `${name} is in sync`)
    t.match(row.paddle_id, new RegExp(`^${prefix}[a-z0-9]{26}$`), `${name} has Paddle's id`)
    t.equal(row.pending_since, null, `${name} is not pending`)
    t.ok(row.raw, `${name} keeps Paddle's snapshot`)
  }
  t.match(product.id, /^prd_[a-z0-9]{26}$/, 'our own id, our own prefix')
  t.equal(customer.level, 2, 'customer under an MSP is level 2')
  t.equal(
    (
      rig.fake.state.customers.get(String(customer.paddle_id))?.custom_data as
        Record<string, unknown> | undefined
    )?.clavitor_id,
    customer.id,
    'our id travels in custom_data',
  )
  t.equal(
    rig.fake.state.prices.get(String(price.paddle_id))?.product_id,
    product.paddle_id,
    'price points at the Paddle product',
  )

  const business = await b.create('businesses', {
    customer_id: customer.id,
    name: 'Acme GmbH',
    contacts: [{ name: 'Ann', email: 'ann@example.com' }],
  })
  t.equal(business.state, 'synced')
  t.match(business.paddle_id, /^biz_/)
  t.same(business.contacts, [{ name: 'Ann', email: 'ann@example.com' }])

  // one-time transaction, left as draft
  const oneTime = await b.create('prices', {
    product_id: product.id,
    description: 'Setup',
    unit_amount: '5000',
    currency_code: 'EUR',
  })
  const txn = await b.create('transactions', {
    customer_id: customer.id,
    address_id: address.id,
    currency_code: 'EUR',
    items: [{ price_id: oneTime.id, quantity: 2 }],
  })
  t.equal(txn.state, 'synced')
  t.match(txn.paddle_id, /^txn_/)
  t.equal(
    txn.discount_id,
    discount.id,
    "the MSP's discount is applied to its customer's transaction",
  )
  t.equal(txn.total, '8000', "Paddle's total merged back (10000 minus 20%)")

  // subscription: pushed as a billed manual transaction, linked when sub_ appears
  const sub = await b.create('subscriptions', {
    customer_id: customer.id,
    address_id: address.id,
    currency_code: 'EUR',
    items: [{ price_id: price.id, quantity: 3 }],
    vault_l0: 'deadbeef',
  })
  t.equal(sub.state, 'synced', 'subscription linked')
  t.match(sub.paddle_id, /^sub_[a-z0-9]{26}$/)
  t.equal(sub.status, 'active')
  t.equal(sub.discount_id, discount.id)
  t.equal(sub.vault_l0, 'deadbeef')
  t.ok(sub.current_period_ends_at, 'period merged from Paddle')
  const origin = b.get('transactions', String(sub.origin_transaction_id))
  t.equal(origin.status, 'billed')
  t.equal(origin.subscription_id, sub.id)
  t.equal(rig.fake.state.subscriptions.size, 1, 'exactly one subscription at Paddle')
  t.equal(rig.fake.state.transactions.get(String(origin.paddle_id))?.collection_mode, 'manual')

  // updates go out as PATCH
  const renamed = await b.update('customers', customer.id, { name: 'Acme Corp' })
  t.equal(renamed.state, 'synced')
  t.equal(rig.fake.state.customers.get(String(customer.paddle_id))?.name, 'Acme Corp')
  const archived = await b.update('products', product.id, { status: 'archived' })
  t.equal(rig.fake.state.products.get(String(archived.paddle_id))?.status, 'archived')

  // MSP margins: revenue by discount, summed as BigInt over minor-unit strings
  const revenue = b.revenueByDiscount()
  const mine = revenue.find((r) => r.discount_id === discount.id)
  t.ok(mine, 'revenue row for the MSP discount')
  t.equal(mine?.msp_id, msp.id)
  t.equal(mine?.revenue, '2880', 'the billed subscription transaction: 3 × 1200 − 20%')
  t.equal(mine?.currency_code, 'EUR')

  const tree = b.customerTree()
  t.equal(tree.length, 1)
  t.equal(tree[0]?.id, msp.id)
  t.equal(tree[0]?.discount_id, discount.id)
  t.equal(tree[0]?.children[0]?.id, customer.id)
  t.same(b.pending(), [], 'nothing pending')
})

t.test('adjustments round-trip; a lost answer is recognised without custom_data', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  const txn = await b.create('transactions', {
    customer_id: s.customer.id,
    address_id: s.address.id,
    currency_code: 'EUR',
    status: 'billed',
    items: [{ price_id: s.price.id, quantity: 1 }],
  })
  t.equal(txn.status, 'billed')
  const credit = await b.create('adjustments', {
    transaction_id: txn.id,
    action: 'credit',
    reason: 'goodwill',
    type: 'partial',
    items: [{ item_id: 'txnitm_01', type: 'partial', amount: '100' }],
  })
  t.match(credit, {
    state: 'synced',
    paddle_id: /^adj_/,
    total: '100',
    currency_code: 'EUR',
    customer_id: s.customer.id,
  })
  await t.rejects(
    b.update('adjustments', credit.id, { reason: 'x' }),
    { code: 'CLA_ERR_INVALID_INPUT' },
    'immutable',
  )
  await t.rejects(
    b.create('adjustments', { transaction_id: txn.id, action: 'refund', reason: 'r' }),
    { code: 'CLA_ERR_INVALID_INPUT' },
    'partial needs items',
  )

  // the same adjustment again (a second, intended one), first answer lost
  rig.fake.failNext({ kind: 'drop', method: 'POST', path: '/adjustments' })
  const again = await b.create('adjustments', {
    transaction_id: txn.id,
    action: 'credit',
    reason: 'goodwill',
    type: 'partial',
    items: [{ item_id: 'txnitm_01', type: 'partial', amount: '100' }],
  })
  t.equal(again.state, 'pending')
  t.equal(rig.fake.state.adjustments.size, 2, 'the fake made the second one')
  rig.clock.advance(6 * 60_000)
  await b.retryOnce()
  const linked = b.get('adjustments', again.id)
  t.equal(linked.state, 'synced')
  t.not(linked.paddle_id, credit.paddle_id, 'matched the unlinked twin, not the first one')
  t.equal(rig.fake.state.adjustments.size, 2, 'no third adjustment')
})

t.test(
  'list, revenue per discount and currency, tree with departments, the worker loop',
  async (t) => {
    const rig = await billingRig({
      billing: { retry: { intervalMs: 10, minAgeMs: 0, baseDelayMs: 0 } },
    })
    t.teardown(rig.close)
    const b = rig.billing
    const s = await seed(b)
    const dept = await b.create('customers', {
      email: 'dept@example.com',
      parent_id: s.customer.id,
    })
    const other = await b.create('customers', { email: 'direct@example.com' })
    const otherAddr = await b.create('addresses', { customer_id: other.id, country_code: 'FR' })
    const usd = await b.create('prices', {
      product_id: s.product.id,
      description: 'usd',
      unit_amount: '999999999999',
      currency_code: 'USD',
      billing_interval: 'year',
    })
    const deptAddr = await b.create('addresses', { customer_id: dept.id, country_code: 'DE' })
    for (let i = 0; i < 3; i++) {
      await b.create('subscriptions', {
        customer_id: dept.id,
        address_id: deptAddr.id,
        currency_code: 'USD',
        items: [{ price_id: usd.id }],
      })
    }
    await b.create('subscriptions', {
      customer_id: other.id,
      address_id: otherAddr.id,
      currency_code: 'EUR',
      items: [{ price_id: s.price.id }],
    })

    const rev = b.revenueByDiscount()
    t.same(
      rev.map((r) => [r.discount_id, r.currency_code, r.revenue, r.transactions]),
      [
        [s.discount.id, 'USD', String(3n * (999999999999n - (999999999999n * 2000n) / 10000n)), 3],
        [null, 'EUR', '1200', 1],
      ].sort((a, b) => String(a[0]).localeCompare(String(b[0]))),
      'summed exactly as BigInt, per discount and currency (the department gets its MSP discount)',
    )

    const tree = b.customerTree()
    t.same(tree.map((n) => n.id).sort(), [s.msp.id, other.id].sort())
    const msp = tree.find((n) => n.id === s.msp.id)!
    t.equal(msp.children[0]?.children[0]?.id, dept.id, 'MSP → customer → department')

    t.equal(b.list('customers').length, 4)
    t.same(
      b.list('customers', { customer_id: s.msp.id }).map((r) => r.id),
      [s.customer.id],
    )
    t.equal(b.list('subscriptions', { customer_id: dept.id, limit: 2 }).length, 2)
    const page2 = b.list('subscriptions', { after: b.list('subscriptions', { limit: 1 })[0]!.id })
    t.equal(page2.length, 3)
    t.equal(b.list('products', { state: 'pending' }).length, 0)
    t.throws(() => b.get('products', 'prd_nope'), { code: 'CLA_ERR_NOT_FOUND' })

    // the worker loop picks up rows on its own
    rig.fake.failNext({ kind: '5xx' })
    const p = await b.create('products', { name: 'later' })
    t.equal(p.state, 'pending')
    const reports: unknown[] = []
    b.startRetryWorker((r) => reports.push(r))
    b.startRetryWorker() // idempotent
    for (let i = 0; i < 500 && b.get('products', p.id).state !== 'synced'; i++)
      await new Promise((r) => setTimeout(r, 10))
    await b.stop()
    t.equal(b.get('products', p.id).state, 'synced', 'converged by the worker')
    t.ok(reports.length >= 1)
  },
)
