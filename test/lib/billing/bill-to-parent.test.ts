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

  // every webhook Paddle sent names the parent's ctm_: applied to the department's rows,
  // never parked as a customer change, never mirrored as a row of the parent's
  const rows = () =>
    rig.db
      .prepare(
        `SELECT 'addresses' AS t, count(*) AS n FROM addresses UNION ALL
         SELECT 'transactions', count(*) FROM transactions UNION ALL
         SELECT 'subscriptions', count(*) FROM subscriptions`,
      )
      .all()
  const before = rows()
  const outcomes = new Set(rig.fake.state.events.map((ev) => deliverSigned(rig, ev).outcome))
  t.notOk(
    [...outcomes].some((o) => /parked|error|inserted/.test(o)),
    [...outcomes].join(', '),
  )
  t.same(rows(), before, 'nothing mirrored')
  t.equal(b.get('subscriptions', sub.id).customer_id, dept.id)
  t.equal(b.get('addresses', address.id).customer_id, dept.id)
  t.equal(b.get('transactions', String(sub.origin_transaction_id)).customer_id, dept.id)
  // custom_data changed in Paddle's dashboard (our key gone): still the department's
  const last = rig.fake.state.events.filter((e) => e.event_type === 'subscription.updated').at(-1)
  const edited = structuredClone(last ?? rig.fake.state.events.at(-1)!)
  Object.assign(edited, {
    event_id: 'evt_01custom_data_edited',
    event_type: 'subscription.updated',
    occurred_at: new Date(rig.clock.now() + 60_000).toISOString(),
  })
  Object.assign(edited.data, { ...paddleSub, custom_data: { team: 'finance' } })
  t.equal(deliverSigned(rig, edited).outcome, 'applied')
  t.match(b.get('subscriptions', sub.id), {
    customer_id: dept.id,
    custom_data: { team: 'finance' },
  })

  // reconcile lists the parent's addresses and the subscriptions: all the department's
  const r = await b.reconcile()
  t.same(r.parked, [])
  t.notOk(
    r.changes.some(([, , o]) => o === 'inserted'),
    JSON.stringify(r.changes),
  )
  t.equal(b.get('subscriptions', sub.id).customer_id, dept.id)
  t.same(b.pending(), [])

  // it cannot move while its address and subscription are at Paddle under the parent
  const other = await b.create('customers', { email: 'other@example.com', parent_id: s.msp.id })
  await t.rejects(b.update('customers', dept.id, { parent_id: other.id }), {
    code: 'CLA_ERR_BILLING_CONFLICT',
    message: /cannot move/,
  })
  await t.rejects(b.update('customers', dept.id, { bill_to_parent: false }), {
    code: 'CLA_ERR_BILLING_CONFLICT',
  })
  // its own fields are ours only: nothing to send
  const renamed = await b.update('customers', dept.id, { name: 'Acme finance & legal' })
  t.match(renamed, { state: 'synced', paddle_id: null })
})

t.test('bill_to_parent given, refused where it cannot hold', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  const chosen = await b.create('customers', {
    email: 'legal@acme.example',
    parent_id: s.customer.id,
    bill_to_parent: true,
  })
  t.match(chosen, { state: 'synced', paddle_id: null, bill_to_parent: true }, 'any email')
  const n = rig.fake.state.customers.size
  await t.rejects(
    b.create('customers', {
      email: 'acme@example.com',
      parent_id: s.customer.id,
      bill_to_parent: false,
    }),
    { code: 'CLA_ERR_BILLING_CONFLICT', message: /Paddle's customer emails are unique/ },
  )
  await t.rejects(
    b.create('customers', { email: 'x@example.com', parent_id: s.msp.id, bill_to_parent: true }),
    { code: 'CLA_ERR_BILLING_HIERARCHY', message: /only a department/ },
  )
  const own = await b.create('customers', { email: 'own@acme.example', parent_id: s.customer.id })
  await t.rejects(b.update('customers', own.id, { email: 'acme@example.com' }), {
    code: 'CLA_ERR_BILLING_CONFLICT',
    message: /cannot take its parent's email/,
  })
  t.equal(rig.fake.state.customers.size, n + 1, 'only the department with its own email')
  // nothing of it at Paddle yet: it may move, and is then billed through its new parent
  const other = await b.create('customers', { email: 'other@example.com', parent_id: s.msp.id })
  const moved = await b.update('customers', chosen.id, { parent_id: other.id })
  t.match(moved, { parent_id: other.id, bill_to_parent: true, state: 'synced' })
  const adr = await b.create('addresses', { customer_id: chosen.id, country_code: 'NL' })
  t.equal(rig.fake.state.addresses.get(String(adr.paddle_id))!.customer_id, other.paddle_id)
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
