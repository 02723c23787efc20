// A department billed through its parent (docs/billing.md "Departments billed through their
// parent"): Paddle's customer emails are unique, so a department with its parent's email
// has no Paddle customer of its own; its addresses, subscriptions and transactions go to
// the parent's ctm_, with our own ids in custom_data, and come back to the department.
import t from 'tap'
import { billingRig, deliverSigned, seed } from '../../fixtures/billing.js'

t.test('a department with its parent email is billed through the parent ctm_', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  const dept = await b.create('customers', {
    email: 'ACME@example.com',
    name: 'Acme finance',
    parent_id: s.customer.id,
  })
  t.match(dept, { level: 3, state: 'synced', paddle_id: null, bill_to_parent: true })
  t.equal(dept.last_error, null, 'no conflict')
  t.equal(rig.fake.state.customers.size, 2, 'no Paddle customer of its own')

  const address = await b.create('addresses', { customer_id: dept.id, country_code: 'FR' })
  t.equal(address.state, 'synced', String(address.last_error))
  const atPaddle = rig.fake.state.addresses.get(String(address.paddle_id))!
  t.equal(atPaddle.customer_id, s.customer.paddle_id, "the address is under the parent's ctm_")

  const sub = await b.create('subscriptions', {
    customer_id: dept.id,
    address_id: address.id,
    currency_code: 'EUR',
    items: [{ price_id: s.price.id }],
  })
  t.equal(sub.state, 'synced', String(sub.last_error))
  const paddleSub = rig.fake.state.subscriptions.get(String(sub.paddle_id))!
  t.equal(paddleSub.customer_id, s.customer.paddle_id, "the subscription is the parent's ctm_'s")
  t.match(paddleSub.custom_data, { clavitor_customer_id: dept.id })
  t.equal(b.get('subscriptions', sub.id).customer_id, dept.id, 'still the department here')
  t.equal(sub.discount_id, s.discount.id, "the MSP's margin applies")

  // Paddle's webhooks name the parent's ctm_: applied to the department's rows, not parked
  const ev = rig.fake.state.events.filter((e) => e.event_type.startsWith('subscription.')).at(-1)!
  rig.db.prepare('UPDATE subscriptions SET paddle_occurred_at = NULL WHERE id = ?').run(sub.id)
  const r = deliverSigned(rig, ev)
  t.match(r.outcome, /^(applied|duplicate)$/)
  t.equal(b.get('subscriptions', sub.id).customer_id, dept.id)
  t.same(b.pending(), [])
})

t.test('a department with its own email keeps its own Paddle customer', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  const dept = await b.create('customers', { email: 'ops@acme.example', parent_id: s.customer.id })
  t.match(dept, { level: 3, state: 'synced', paddle_id: /^ctm_/, bill_to_parent: false })
  const address = await b.create('addresses', { customer_id: dept.id, country_code: 'FR' })
  t.equal(rig.fake.state.addresses.get(String(address.paddle_id))!.customer_id, dept.paddle_id)
  t.equal(rig.fake.state.customers.size, 3)
})
