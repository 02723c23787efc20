// The fake Paddle judged by Paddle's official Node SDK (@paddle/paddle-node-sdk, a dev
// dependency): every entity and action our billing uses, created, read, listed and
// changed through the SDK against the fake (the SDK takes the fake's URL as its
// environment), and every webhook the fake sent parsed by the SDK's `unmarshal` with the
// fake's secret. The SDK throws on a shape it cannot parse (a missing
// `details.tax_rates_used`, subscription items without `product`, adjustments without
// `items`…), so this test fails when the fake stops answering as Paddle does.
import t from 'tap'
import { Paddle, type Environment } from '@paddle/paddle-node-sdk'
import { startFakePaddle } from '../../../scripts/fake-paddle/server.js'

t.test("the fake answers every call we use as Paddle's SDK expects", async (t) => {
  const fake = await startFakePaddle({ apiKey: 'pdl_sdbx_apikey_contract' })
  t.teardown(() => fake.close())
  const p = new Paddle('pdl_sdbx_apikey_contract', { environment: fake.url as Environment })

  const ctm = await p.customers.create({ email: 'sdk@example.com', name: 'SDK' })
  t.match(ctm, { id: /^ctm_/, email: 'sdk@example.com', status: 'active' })
  t.match(await p.customers.update(ctm.id, { name: 'SDK 2' }), { name: 'SDK 2' })
  t.ok(
    (await p.customers.list().next()).some((c) => c.id === ctm.id),
    'customers list',
  )
  const add = await p.addresses.create(ctm.id, { countryCode: 'DE' })
  t.match(add, { id: /^add_/, countryCode: 'DE' })
  t.ok((await p.addresses.list(ctm.id).next()).length >= 1)
  const biz = await p.businesses.create(ctm.id, { name: 'SDK GmbH' })
  t.match(biz, { id: /^biz_/, name: 'SDK GmbH' })
  const pro = await p.products.create({ name: 'Vault', taxCategory: 'saas' })
  const pri = await p.prices.create({
    productId: pro.id,
    description: 'monthly',
    unitPrice: { amount: '1000', currencyCode: 'EUR' },
    billingCycle: { interval: 'month', frequency: 1 },
  })
  t.match(pri, { id: /^pri_/, productId: pro.id, billingCycle: { interval: 'month' } })
  const dsc = await p.discounts.create({ description: 'margin', type: 'percentage', amount: '20' })
  t.match(dsc, { id: /^dsc_/, type: 'percentage' })

  // a billed manual transaction: Paddle makes the subscription from it
  const txn = await p.transactions.create({
    customerId: ctm.id,
    addressId: add.id,
    currencyCode: 'EUR',
    collectionMode: 'manual',
    billingDetails: { paymentTerms: { interval: 'day', frequency: 30 } },
    status: 'billed',
    discountId: dsc.id,
    items: [{ priceId: pri.id, quantity: 2 }],
  })
  t.match(txn, {
    id: /^txn_/,
    status: 'billed',
    details: {
      totals: { subtotal: '2000', discount: '400', total: '1600' },
      lineItems: [{ quantity: 2 }],
    },
    items: [{ quantity: 2, price: { id: pri.id } }],
  })
  const got = await p.transactions.get(txn.id)
  t.match(got.subscriptionId, /^sub_/)
  t.ok((await p.transactions.list().next()).length >= 1)
  const subId = got.subscriptionId!
  t.match(await p.subscriptions.get(subId), {
    status: 'active',
    items: [{ quantity: 2, price: { id: pri.id }, product: { id: pro.id } }],
    discount: { id: dsc.id },
  })
  t.ok((await p.subscriptions.list().next()).some((s) => s.id === subId))

  // the lifecycle actions we send
  t.match(
    await p.subscriptions.update(subId, {
      items: [{ priceId: pri.id, quantity: 3 }],
      prorationBillingMode: 'prorated_immediately',
    }),
    { items: [{ quantity: 3 }] },
  )
  t.match(await p.subscriptions.update(subId, { discount: null }), { discount: null })
  t.match(await p.subscriptions.pause(subId, { effectiveFrom: 'next_billing_period' }), {
    status: 'active',
    scheduledChange: { action: 'pause' },
  })
  t.match(await p.subscriptions.update(subId, { scheduledChange: null }), { scheduledChange: null })
  t.match(await p.subscriptions.pause(subId, { effectiveFrom: 'immediately' }), {
    status: 'paused',
  })
  t.match(await p.subscriptions.resume(subId, { effectiveFrom: 'immediately' }), {
    status: 'active',
  })
  t.match(await p.subscriptions.cancel(subId, { effectiveFrom: 'next_billing_period' }), {
    scheduledChange: { action: 'cancel' },
  })

  const adj = await p.adjustments.create({
    transactionId: txn.id,
    action: 'credit',
    reason: 'goodwill',
    type: 'partial',
    items: [{ itemId: got.details!.lineItems[0]!.id, type: 'partial', amount: '100' }],
  })
  t.match(adj, {
    id: /^adj_/,
    action: 'credit',
    items: [{ amount: '100' }],
    totals: { total: '100' },
  })
  t.ok((await p.adjustments.list().next()).some((a) => a.id === adj.id))

  // every webhook the fake sent, parsed by the SDK
  t.ok(fake.state.events.length >= 15, `${fake.state.events.length} events`)
  for (const ev of fake.state.events) {
    const body = JSON.stringify(ev)
    const parsed = await p.webhooks.unmarshal(body, fake.secret, fake.sign(body))
    t.equal(parsed.eventId, ev.event_id, `${ev.event_type} parses`)
  }

  // GET /events, the event stream: every event, paged by the SDK's own collection (it
  // follows meta.pagination.next), in event_id order, each parsed into its typed event
  const listed: Array<{ eventId: string; eventType: string; occurredAt: string }> = []
  for await (const ev of p.events.list({ perPage: 7, orderBy: 'id[ASC]' })) listed.push(ev)
  t.same(
    listed.map((e) => [e.eventId, e.eventType, e.occurredAt]),
    fake.state.events.map((e) => [e.event_id, e.event_type, e.occurred_at]),
    'the whole stream, in order',
  )
  const third = fake.state.events[2]!.event_id
  const after = await p.events.list({ after: third, perPage: 200 }).next()
  t.equal(after[0]?.eventId, fake.state.events[3]!.event_id, '`after` an event id')
  t.equal(after.length, fake.state.events.length - 3)
  const subs = await p.events.list({ eventType: ['subscription.created'] }).next()
  t.same(
    subs.map((e) => e.eventType),
    ['subscription.created'],
    'event_type filter',
  )

  // the SDK's lower-case `bearer` scheme is accepted, a wrong key still refused
  const wrong = new Paddle('pdl_sdbx_apikey_wrong', { environment: fake.url as Environment })
  await t.rejects(wrong.customers.get(ctm.id), /Invalid API key|forbidden/)
})
