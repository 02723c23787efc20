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
