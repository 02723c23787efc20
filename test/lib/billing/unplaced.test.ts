// A customer made at Paddle directly (no clavitor_id of ours) is mirrored "unplaced"
// (level 0): not an MSP, not counted or margin-ed as one, with no children, until someone
// files it with the move path (update parent_id): under an MSP it is a customer (level 2)
// and the MSP's margin reaches its subscriptions. docs/billing.md "Customers made at Paddle".
import t from 'tap'
import { dashboardFacts } from '../../../lib/admin/read.js'
import { billingRig, deliverSigned, seed, type BillingRig } from '../../fixtures/billing.js'

type Obj = Record<string, unknown> & { id: string }

/** A customer made in Paddle's dashboard, and its customer.created webhook delivered to us. */
async function madeAtPaddle(rig: BillingRig, email: string) {
  const ctm = (await rig.client.post<Obj>('/customers', { email, name: 'Direct' })).data
  const ev = rig.fake.state.events.find(
    (e) => e.event_type === 'customer.created' && e.data.id === ctm.id,
  )!
  return { ctm, result: deliverSigned(rig, ev) }
}

t.test('customer.created from Paddle: unplaced, not an MSP, no margin', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  const { ctm, result } = await madeAtPaddle(rig, 'direct@example.com')
  t.equal(result.outcome, 'inserted')
  const row = b.list('customers').find((c) => c.paddle_id === ctm.id)!
  t.match(row, { level: 0, parent_id: null, state: 'synced', email: 'direct@example.com' })

  const tree = b.customerTree()
  t.same(
    tree.filter((n) => n.level === 1).map((n) => n.id),
    [s.msp.id],
    'not listed as an MSP',
  )
  t.match(tree.at(-1), { id: row.id, level: 0, children: [] }, 'listed last, as unplaced')
  t.same(dashboardFacts(rig.db).customers, { msp: 1, customer: 1, department: 0, unplaced: 1 })

  await t.rejects(
    b.create('discounts', {
      description: 'margin',
      type: 'percentage',
      amount: '10',
      msp_id: row.id,
    }),
    { code: 'CLA_ERR_BILLING_HIERARCHY', message: /not an MSP/ },
    'no margin of its own',
  )
  await t.rejects(b.create('customers', { email: 'c@example.com', parent_id: row.id }), {
    code: 'CLA_ERR_BILLING_HIERARCHY',
    message: /unplaced/,
  })
  const adr = await b.create('addresses', { customer_id: row.id, country_code: 'DE' })
  const sub = await b.create('subscriptions', {
    customer_id: row.id,
    address_id: adr.id,
    currency_code: 'EUR',
    items: [{ price_id: s.price.id }],
  })
  t.match(sub, { state: 'synced', discount_id: null }, 'no margin while unplaced')
  const renamed = await b.update('customers', row.id, { name: 'Direct GmbH' })
  t.match(renamed, { level: 0, parent_id: null, state: 'synced' }, 'a rename keeps it unplaced')

  // filed under the MSP: a customer (level 2); the MSP's margin reaches its subscription
  const filed = await b.update('customers', row.id, { parent_id: s.msp.id })
  t.match(filed, { level: 2, parent_id: s.msp.id, state: 'synced' })
  t.match(rig.fake.state.customers.get(ctm.id)!.custom_data, {
    clavitor_id: row.id,
    clavitor_level: 2,
    clavitor_parent_id: s.msp.id,
  })
  const subNow = b.get('subscriptions', sub.id)
  t.match(subNow, { discount_id: s.discount.id, state: 'synced' }, "the MSP's margin")
  t.match(rig.fake.state.subscriptions.get(String(subNow.paddle_id))!.discount, {
    id: s.discount.paddle_id,
  })
  const next = await b.create('subscriptions', {
    customer_id: row.id,
    address_id: adr.id,
    currency_code: 'EUR',
    items: [{ price_id: s.price.id }],
  })
  t.equal(next.discount_id, s.discount.id, 'and every new one')
  t.same(dashboardFacts(rig.db).customers, { msp: 1, customer: 2, department: 0, unplaced: 0 })
  await t.rejects(
    b.update('customers', row.id, { parent_id: null }),
    {
      code: 'CLA_ERR_BILLING_HIERARCHY',
    },
    'filed once: it keeps its level',
  )
})

t.test('filed at the top it is an MSP, under a customer a department', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  const a = await madeAtPaddle(rig, 'top@example.com')
  const d = await madeAtPaddle(rig, 'dept@example.com')
  // reconcile finds nothing new, and does not place them either
  const r = await b.reconcile({ entities: ['customers'] })
  t.same(r.changes, [])
  const rowOf = (ctm: Obj) => b.list('customers').find((c) => c.paddle_id === ctm.id)!
  t.equal(rowOf(a.ctm).level, 0)
  const msp = await b.update('customers', rowOf(a.ctm).id, { parent_id: null })
  t.match(msp, { level: 1, parent_id: null, state: 'synced' })
  const margin = await b.create('discounts', {
    description: 'its margin',
    type: 'percentage',
    amount: '5',
    msp_id: msp.id,
  })
  t.equal(margin.msp_id, msp.id, 'an MSP now: it may have a margin')
  const dept = await b.update('customers', rowOf(d.ctm).id, { parent_id: s.customer.id })
  t.match(dept, { level: 3, parent_id: s.customer.id, bill_to_parent: false, paddle_id: d.ctm.id })
})
