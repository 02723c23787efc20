// Converging with Paddle (lib/billing/reconcile.ts): after a missed webhook, after objects
// made only at Paddle (parents before children), a dry run that changes nothing, the lists
// as the repair pass behind the event stream, our pending rows kept, one object re-synced
// by id. The event stream's cursor: reconcile-events.test.ts.
import t from 'tap'
import { billingRig, seed } from '../../fixtures/billing.js'

type Obj = Record<string, unknown> & { id: string }

t.test('a missed webhook: the row is repaired; a dry run changes nothing', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  // someone renames the customer in Paddle's dashboard; the webhook never reaches us
  await rig.client.patch(`/customers/${String(s.customer.paddle_id)}`, { name: 'Acme Renamed' })
  t.equal(b.get('customers', s.customer.id).name, 'Acme')

  const dry = await b.reconcile({ dryRun: true })
  t.match(dry, { dry_run: true, changes: [['customers', s.customer.paddle_id, 'applied']] })
  t.equal(b.get('customers', s.customer.id).name, 'Acme', 'a dry run writes nothing')

  const r = await b.reconcile()
  t.same(r.changes, [['customers', s.customer.paddle_id, 'applied']])
  t.match(r.events, { applied: 1 }, "repaired from Paddle's event stream")
  t.match(r.entities.customers, { seen: 2, applied: 0, unchanged: 2 }, 'the lists agree')
  t.equal(b.get('customers', s.customer.id).name, 'Acme Renamed')
  const again = await b.reconcile()
  t.same(again.changes, [], 'a second pass finds nothing to do')
})

t.test('the lists repair what the event stream no longer holds', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  await b.reconcile() // the cursor at the end of the stream
  // renamed at Paddle; its webhook missed and its event gone from the stream (older than
  // Paddle's 90 days, or visible only after the cursor had passed its id)
  await rig.client.patch(`/customers/${String(s.customer.paddle_id)}`, { name: 'Acme Renamed' })
  rig.fake.state.events.pop()
  const r = await b.reconcile()
  t.match(r.events, { seen: 0 })
  t.same(r.changes, [['customers', s.customer.paddle_id, 'applied']])
  t.match(r.entities.customers, { applied: 1 }, 'by the lists')
  t.equal(b.get('customers', s.customer.id).name, 'Acme Renamed')
})

t.test('objects made only at Paddle are mirrored, parents first', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  await seed(b)
  // a customer, its address, a product and price made in Paddle's dashboard
  const ctm = (
    await rig.client.post<Obj>('/customers', { email: 'direct@example.com', name: 'Direct' })
  ).data
  const add = (await rig.client.post<Obj>(`/customers/${ctm.id}/addresses`, { country_code: 'FR' }))
    .data
  const pro = (
    await rig.client.post<Obj>('/products', { name: 'Made at Paddle', tax_category: 'standard' })
  ).data
  const pri = (
    await rig.client.post<Obj>('/prices', {
      product_id: pro.id,
      description: 'yearly',
      unit_price: { amount: '9900', currency_code: 'EUR' },
      billing_cycle: { interval: 'year', frequency: 1 },
    })
  ).data
  const r = await b.reconcile()
  t.same(
    r.changes.map(([e, id, what]) => [e, id, what]),
    [
      ['customers', ctm.id, 'inserted'],
      ['addresses', add.id, 'inserted'],
      ['products', pro.id, 'inserted'],
      ['prices', pri.id, 'inserted'],
    ],
  )
  const row = (e: string, pid: string) =>
    rig.db.prepare(`SELECT * FROM ${e} WHERE paddle_id = ?`).get(pid) as Record<string, unknown>
  t.equal(
    row('addresses', add.id).customer_id,
    row('customers', ctm.id).id,
    'placed under our mirror',
  )
  t.equal(row('prices', pri.id).product_id, row('products', pro.id).id)
  t.match(row('customers', ctm.id), { level: 0, parent_id: null }, 'unplaced, not an MSP')
  t.same((await b.reconcile()).changes, [])
})

t.test("our pending rows keep what we decided; a subscription's items follow Paddle", async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  const sub = await b.create('subscriptions', {
    customer_id: s.customer.id,
    address_id: s.address.id,
    currency_code: 'EUR',
    items: [{ price_id: s.price.id, quantity: 1 }],
  })
  // our rename waits (Paddle down for it); Paddle has an older name
  rig.fake.failNext({ kind: '5xx', count: 10, method: 'PATCH', path: '/customers' })
  t.equal((await b.update('customers', s.customer.id, { name: 'Ours' })).state, 'pending')
  await rig.client.patch(`/subscriptions/${String(sub.paddle_id)}`, {
    items: [{ price_id: s.price.paddle_id, quantity: 7 }],
    proration_billing_mode: 'do_not_bill',
  })
  await b.reconcile()
  rig.fake.clearFailures()
  t.equal(b.get('customers', s.customer.id).name, 'Ours', 'the pending change is kept')
  t.match(b.get('subscriptions', sub.id).items, [{ price_id: s.price.id, quantity: 7 }])
})

t.test('one object by its Paddle id', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  await rig.client.patch(`/products/${String(s.product.paddle_id)}`, { name: 'Renamed product' })
  t.match(await b.resync(String(s.product.paddle_id)), { entity: 'products', outcome: 'applied' })
  t.equal(b.get('products', s.product.id).name, 'Renamed product')
  t.match(await b.resync(String(s.product.paddle_id)), { outcome: 'unchanged' })
  t.match(await b.resync(String(s.address.paddle_id)), {
    entity: 'addresses',
    outcome: 'unchanged',
  })
  await t.rejects(b.resync('zzz_123'), { code: 'CLA_ERR_INVALID_INPUT' })
  await t.rejects(b.resync('add_01unknown00000000000000000'), { code: 'CLA_ERR_NOT_FOUND' })
})
