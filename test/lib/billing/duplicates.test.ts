// More than one Paddle object per clavitor_id (issue 13 item 6): twins injected at the fake
// (as a create that landed after the settle window would make them) are found; unused extra
// products, prices and discounts are archived, the one our row is linked to is kept; a
// twin in use and a twin transaction (a second invoice) are reported, never touched, with
// an alarm in the audit log.
import t from 'tap'
import { AuditLog } from '../../../lib/audit/log.js'
import { billingRig, seed } from '../../fixtures/billing.js'

t.test('twins found; unused extras archived; transactions and used ones reported', async (t) => {
  const rig = await billingRig({ audit: true })
  t.teardown(rig.close)
  const b = rig.billing
  const c = rig.client
  const s = await seed(b)
  const txn = await b.create('transactions', {
    customer_id: s.customer.id,
    address_id: s.address.id,
    currency_code: 'EUR',
    items: [{ price_id: s.price.id, quantity: 1 }],
  })
  t.equal(txn.state, 'synced')

  const none = await b.duplicates({ resolve: true })
  t.same(none.groups, [], 'no twins at first')
  t.equal(none.needs_attention, 0)

  // twins carrying our ids, as late creates would leave them
  const cd = (id: string) => ({ custom_data: { clavitor_id: id } })
  const twinProduct = (
    await c.post('/products', { name: 'Clavitor vault', tax_category: 'saas', ...cd(s.product.id) })
  ).data.id
  const twinPrice = (
    await c.post('/prices', {
      product_id: s.product.paddle_id,
      description: 'Vault, monthly',
      unit_price: { amount: '1200', currency_code: 'EUR' },
      billing_cycle: { interval: 'month', frequency: 1 },
      ...cd(s.price.id),
    })
  ).data.id
  const twinDiscount = (
    await c.post('/discounts', {
      description: 'MSP One margin',
      type: 'percentage',
      amount: '20',
      ...cd(s.discount.id),
    })
  ).data.id
  const twinTxn = (
    await c.post('/transactions', {
      items: [{ price_id: s.price.paddle_id, quantity: 1 }],
      customer_id: s.customer.paddle_id,
      address_id: s.address.paddle_id,
      currency_code: 'EUR',
      ...cd(txn.id),
    })
  ).data.id
  // a twin price that something at Paddle uses: only reported
  const p2 = await b.create('prices', {
    product_id: s.product.id,
    description: 'Vault, yearly',
    unit_amount: '12000',
    currency_code: 'EUR',
    billing_interval: 'year',
  })
  const usedTwin = (
    await c.post('/prices', {
      product_id: s.product.paddle_id,
      description: 'Vault, yearly',
      unit_price: { amount: '12000', currency_code: 'EUR' },
      ...cd(p2.id),
    })
  ).data.id
  const user = (
    await c.post('/transactions', {
      items: [{ price_id: usedTwin, quantity: 1 }],
      currency_code: 'EUR',
    })
  ).data.id

  const dry = await b.duplicates({ resolve: false })
  t.equal(dry.groups.length, 5, 'product, 2 prices, discount, transaction')
  t.equal(dry.archived, 0)
  const byTwin = (r: typeof dry) =>
    new Map(r.groups.flatMap((g) => g.extras.map((x) => [x.paddle_id, { ...x, g }])))
  t.match(byTwin(dry).get(twinProduct), {
    action: 'would_archive',
    g: { kept: s.product.paddle_id },
  })
  t.equal(rig.fake.state.products.get(twinProduct)?.status, 'active', 'a dry run archives nothing')

  const requestsBefore = rig.fake.state.requests.length
  const r = await b.duplicates({ resolve: true })
  const x = byTwin(r)
  t.match(x.get(twinProduct), {
    action: 'archived',
    g: { entity: 'products', clavitor_id: s.product.id, kept: s.product.paddle_id },
  })
  t.match(x.get(twinPrice), { action: 'archived', g: { kept: s.price.paddle_id } })
  t.match(x.get(twinDiscount), { action: 'archived', g: { kept: s.discount.paddle_id } })
  t.match(x.get(usedTwin), {
    action: 'reported',
    reason: new RegExp(`in use at Paddle by ${user}`),
  })
  t.match(x.get(twinTxn), {
    action: 'reported',
    reason: /second transaction \(invoice\)/,
    g: { kept: txn.paddle_id },
  })
  t.equal(r.archived, 3)
  t.equal(r.needs_attention, 2)
  t.same(
    r.groups.find((g) => g.entity === 'transactions')?.paddle_ids,
    [txn.paddle_id, twinTxn].sort(),
  )

  for (const id of [twinProduct, twinPrice, twinDiscount]) {
    const coll = id.startsWith('pro_') ? 'products' : id.startsWith('pri_') ? 'prices' : 'discounts'
    t.equal(rig.fake.state[coll].get(id)?.status, 'archived', `${id} archived at Paddle`)
  }
  for (const [coll, id] of [
    ['products', s.product.paddle_id],
    ['prices', s.price.paddle_id],
    ['discounts', s.discount.paddle_id],
    ['prices', usedTwin],
  ] as const)
    t.equal(rig.fake.state[coll].get(String(id))?.status, 'active', `${String(id)} kept active`)
  const patched = rig.fake.state.requests.slice(requestsBefore).filter((q) => q.method !== 'GET')
  t.same(
    patched.map((q) => q.path).sort(),
    [`/discounts/${twinDiscount}`, `/prices/${twinPrice}`, `/products/${twinProduct}`].sort(),
    'only the three archives were written; the transactions untouched',
  )
  t.equal(
    rig.fake.state.transactions.get(twinTxn)?.status,
    'ready',
    'the twin transaction is left as it was',
  )

  const audit = new AuditLog(rig.db).list({ kind: 'billing.duplicate', limit: 100 })
  const alarms = audit.filter((e) => e.outcome === 'alarm')
  t.ok(
    alarms.some((e) => JSON.stringify(e.data).includes(twinTxn)),
    'the second invoice raised an alarm',
  )
  t.ok(alarms.every((e) => e.reason === 'needs_person'))

  const again = await b.duplicates({ resolve: true })
  t.match(byTwin(again).get(twinProduct), { action: 'already_archived' })
  t.equal(again.archived, 0, 'nothing left to archive')
  t.equal(again.needs_attention, 2, 'still reported: a person has to act')
})

t.test('a row not linked to any of its twins yet: reported, nothing archived', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  rig.fake.failNext({ kind: '5xx', method: 'POST', path: '/products' })
  const p = await rig.billing.create('products', { name: 'pending' })
  for (let i = 0; i < 2; i++)
    await rig.client.post('/products', {
      name: 'pending',
      tax_category: 'standard',
      custom_data: { clavitor_id: p.id },
    })
  const r = await rig.billing.duplicates({ resolve: true })
  t.equal(r.groups.length, 1)
  t.match(r.groups[0], {
    kept: null,
    extras: [{ action: 'reported', reason: /linked to none of them yet/ }, { action: 'reported' }],
  })
  t.equal(r.archived, 0)
})
