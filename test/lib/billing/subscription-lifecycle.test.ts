// The subscription's life led by us (lib/billing/subscription-lifecycle.ts), against the
// fake Paddle over real HTTP and a real SQLite file: each action written to our row first
// and then at Paddle, the webhooks that follow agreeing, a lost answer never sent twice,
// an action decided before Paddle made the subscription, a refusal discarded, and the
// items following Paddle's snapshots.
import t from 'tap'
import { listEvents } from '../../../lib/audit/log.js'
import { entitlementsOf } from '../../../lib/billing/entitlements.js'
import { createPlan } from '../../../lib/billing/plans.js'
import { billingRig, deliverSigned, seed, type BillingRig } from '../../fixtures/billing.js'
import type { WebhookEvent } from '../../../scripts/fake-paddle/server.js'

/** Delivers the fake's events emitted since `from` (its index), signed, to our handler. */
function deliverSince(rig: BillingRig, from: number): string[] {
  return rig.fake.state.events.slice(from).map((ev: WebhookEvent) => deliverSigned(rig, ev).outcome)
}

const calls = (rig: BillingRig, method: string, path: RegExp) =>
  rig.fake.state.requests.filter((r) => r.method === method && path.test(r.path)).length

async function linkedSubscription(t: { teardown(fn: () => unknown): void }) {
  const rig = await billingRig({ audit: true })
  t.teardown(rig.close)
  const s = await seed(rig.billing)
  const sub = await rig.billing.create('subscriptions', {
    customer_id: s.customer.id,
    address_id: s.address.id,
    currency_code: 'EUR',
    items: [{ price_id: s.price.id, quantity: 1 }],
  })
  const pid = String(sub.paddle_id)
  const paddleSub = () => rig.fake.state.subscriptions.get(pid)!
  return { rig, s, sub, pid, paddleSub, b: rig.billing }
}

t.test('each action: our row first, then Paddle, and the webhooks that follow agree', async (t) => {
  const { rig, s, sub, pid, paddleSub, b } = await linkedSubscription(t)
  t.equal(sub.state, 'synced')
  let mark = rig.fake.state.events.length

  // cancel at the period's end: a scheduled change, still active
  let row = await b.changeSubscription(
    sub.id,
    { action: 'cancel', effective_from: 'next_billing_period' },
    { actor: 'hum_1' },
  )
  t.match(row, {
    state: 'synced',
    status: 'active',
    pending_change: null,
    scheduled_change: { action: 'cancel', effective_at: sub.current_period_ends_at },
  })
  t.match(paddleSub(), { status: 'active', scheduled_change: { action: 'cancel' } })
  t.ok(
    deliverSince(rig, mark).every((o) => o === 'applied'),
    'the webhooks that follow apply',
  )
  t.match(b.get('subscriptions', sub.id), {
    status: 'active',
    scheduled_change: { action: 'cancel' },
  })
  await t.rejects(
    b.changeSubscription(sub.id, { action: 'cancel', effective_from: 'next_billing_period' }),
    {
      code: 'CLA_ERR_BILLING_CONFLICT',
      message: /already set to cancel/,
    },
  )

  // resume drops the scheduled cancel (PATCH scheduled_change: null)
  mark = rig.fake.state.events.length
  row = await b.changeSubscription(sub.id, { action: 'resume' })
  t.match(row, { state: 'synced', status: 'active', scheduled_change: null })
  t.equal(paddleSub().scheduled_change, null)
  deliverSince(rig, mark)

  // pause now, resume now
  row = await b.changeSubscription(sub.id, { action: 'pause', effective_from: 'immediately' })
  t.match(row, { state: 'synced', status: 'paused' })
  t.equal(paddleSub().status, 'paused')
  row = await b.changeSubscription(sub.id, { action: 'resume' })
  t.match(row, { state: 'synced', status: 'active', paused_at: null })
  t.equal(paddleSub().status, 'active')

  // items: quantity 3 with a proration mode; Paddle's items, our items, the limits
  const plan = createPlan(rig.db, {
    name: 'Team',
    price_ids: [s.price.id],
    max_vaults: 2,
    max_devices_per_vault: 5,
  })
  t.equal(entitlementsOf(rig.db, sub.id)?.max_vaults, 2)
  row = await b.changeSubscription(sub.id, {
    action: 'change_items',
    items: [{ price_id: s.price.id, quantity: 3 }],
    proration_billing_mode: 'prorated_immediately',
  })
  t.match(row, { state: 'synced', items: [{ price_id: s.price.id, quantity: 3 }] })
  t.match(paddleSub().items, [{ quantity: 3, price: { id: s.price.paddle_id } }])
  t.match(entitlementsOf(rig.db, sub.id), { plans: [{ id: plan.id, quantity: 3 }], max_vaults: 6 })
  const patch = rig.fake.state.requests.filter(
    (r) => r.method === 'PATCH' && r.path === `/subscriptions/${pid}`,
  )
  t.equal(patch.length, 2, 'one PATCH for the resume, one for the items')

  // the discount (the MSP margin) removed, then set again
  t.equal(row.discount_id, s.discount.id)
  row = await b.changeSubscription(sub.id, {
    action: 'set_discount',
    discount_id: null,
    effective_from: 'immediately',
  })
  t.match(row, { state: 'synced', discount_id: null })
  t.equal(paddleSub().discount, null)
  row = await b.changeSubscription(sub.id, {
    action: 'set_discount',
    discount_id: s.discount.id,
    effective_from: 'next_billing_period',
  })
  t.match(row, { state: 'synced', discount_id: s.discount.id })
  t.match(paddleSub().discount, { id: s.discount.paddle_id })

  // cancel now: final
  mark = rig.fake.state.events.length
  row = await b.changeSubscription(sub.id, { action: 'cancel', effective_from: 'immediately' })
  t.match(row, { state: 'synced', status: 'canceled' })
  t.equal(paddleSub().status, 'canceled')
  deliverSince(rig, mark)
  await t.rejects(b.changeSubscription(sub.id, { action: 'resume' }), {
    code: 'CLA_ERR_BILLING_CONFLICT',
    message: /is canceled/,
  })
  const audited = listEvents(rig.db, { kind: 'subscription.change' })
  t.equal(audited.length, 8, 'every action audited')
  const first = audited.find((e) => e.actor === 'hum_1')
  t.match(JSON.parse(String(first?.data)), {
    subscription: sub.id,
    action: 'cancel',
    effective_from: 'next_billing_period',
  })
})

t.test('a lost answer is never sent twice: cancel, items', async (t) => {
  const { rig, s, sub, pid, paddleSub, b } = await linkedSubscription(t)
  rig.fake.failNext({ kind: 'drop', method: 'POST', path: `/subscriptions/${pid}/cancel` })
  let row = await b.changeSubscription(sub.id, { action: 'cancel', effective_from: 'immediately' })
  t.match(row, { state: 'pending', status: 'canceled', pending_change: { action: 'cancel' } })
  t.match(row.last_error, /CLA_ERR_PADDLE/)
  t.equal(paddleSub().status, 'canceled', 'Paddle did it; the answer was lost')
  await b.retryOnce({ force: true })
  row = b.get('subscriptions', sub.id)
  t.match(row, { state: 'synced', status: 'canceled', pending_change: null })
  t.equal(calls(rig, 'POST', new RegExp(`^/subscriptions/${pid}/cancel`)), 1, 'sent once')

  const two = await linkedSubscription(t)
  two.rig.fake.failNext({ kind: 'drop', method: 'PATCH', path: `/subscriptions/${two.pid}` })
  row = await two.b.changeSubscription(two.sub.id, {
    action: 'change_items',
    items: [{ price_id: two.s.price.id, quantity: 4 }],
    proration_billing_mode: 'full_immediately',
  })
  t.equal(row.state, 'pending')
  t.match(row.items, [{ quantity: 4 }], 'our items first')
  await two.b.retryOnce({ force: true })
  t.match(two.b.get('subscriptions', two.sub.id), { state: 'synced', items: [{ quantity: 4 }] })
  t.equal(calls(two.rig, 'PATCH', new RegExp(`^/subscriptions/${two.pid}$`)), 1, 'PATCHed once')
  void s
})

t.test('while an action waits, a webhook does not undo it; then Paddle agrees', async (t) => {
  const { rig, sub, pid, paddleSub, b } = await linkedSubscription(t)
  rig.fake.failNext({ kind: '5xx', count: 3, path: `/subscriptions/${pid}` })
  const row = await b.changeSubscription(sub.id, { action: 'pause', effective_from: 'immediately' })
  t.match(row, { state: 'pending', status: 'paused' })
  // Paddle, not told yet, sends an update of its own (say, a renewal): still active there
  const mark = rig.fake.state.events.length
  rig.fake.setSubscriptionStatus(pid, 'active')
  deliverSince(rig, mark)
  t.match(b.get('subscriptions', sub.id), { status: 'paused', state: 'pending' }, 'ours held')
  rig.fake.clearFailures()
  await b.retryOnce({ force: true })
  t.match(b.get('subscriptions', sub.id), {
    state: 'synced',
    status: 'paused',
    pending_change: null,
  })
  t.equal(paddleSub().status, 'paused')
})

t.test(
  'an action decided before Paddle made the subscription is sent once it exists',
  async (t) => {
    const rig = await billingRig({ audit: true })
    t.teardown(rig.close)
    const s = await seed(rig.billing)
    rig.fake.failNext({ kind: '5xx', count: 2, method: 'POST', path: '/transactions' })
    const sub = await rig.billing.create('subscriptions', {
      customer_id: s.customer.id,
      address_id: s.address.id,
      currency_code: 'EUR',
      items: [{ price_id: s.price.id, quantity: 1 }],
    })
    t.match(sub, { state: 'pending', paddle_id: null })
    const row = await rig.billing.changeSubscription(sub.id, {
      action: 'cancel',
      effective_from: 'next_billing_period',
    })
    t.match(row, {
      state: 'pending',
      pending_change: { action: 'cancel' },
      scheduled_change: { action: 'cancel' },
    })
    await rig.billing.retryOnce({ force: true }) // the transaction reaches Paddle
    await rig.billing.retryOnce({ force: true }) // the subscription is linked, then canceled
    const after = rig.billing.get('subscriptions', sub.id)
    t.match(after, {
      state: 'synced',
      pending_change: null,
      paddle_id: /^sub_/,
      scheduled_change: { action: 'cancel' },
    })
    t.match(rig.fake.state.subscriptions.get(String(after.paddle_id))?.scheduled_change, {
      action: 'cancel',
    })
  },
)

t.test(
  'Paddle refuses: the action fails, a person discards it, Paddle state returns',
  async (t) => {
    const { rig, sub, pid, paddleSub, b } = await linkedSubscription(t)
    rig.fake.failNext({
      kind: 'reject',
      status: 400,
      code: 'subscription_update_when_past_due',
      path: `/subscriptions/${pid}/pause`,
    })
    const row = await b.changeSubscription(sub.id, {
      action: 'pause',
      effective_from: 'immediately',
    })
    t.match(row, { state: 'failed', status: 'paused', last_error: /CLA_ERR_PADDLE_REJECTED/ })
    t.equal(paddleSub().status, 'active')
    await t.rejects(
      b.changeSubscription(sub.id, { action: 'cancel', effective_from: 'immediately' }),
      {
        code: 'CLA_ERR_BILLING_CONFLICT',
        message: /has a pause not confirmed by Paddle yet \(failed/,
      },
    )
    const back = await b.discardSubscriptionChange(sub.id, { actor: 'hum_2' })
    t.match(back, { state: 'synced', status: 'active', pending_change: null })
    t.match(listEvents(rig.db, { kind: 'subscription.change', outcome: 'discarded' })[0], {
      actor: 'hum_2',
    })
    await t.rejects(b.discardSubscriptionChange(sub.id), { code: 'CLA_ERR_INVALID_INPUT' })
    t.match(
      await b.changeSubscription(sub.id, { action: 'cancel', effective_from: 'immediately' }),
      { state: 'synced', status: 'canceled' },
    )
  },
)

t.test('bad actions are refused and write nothing', async (t) => {
  const { rig, s, sub, b } = await linkedSubscription(t)
  const other = await b.create('prices', {
    product_id: s.product.id,
    description: 'USD monthly',
    unit_amount: '1300',
    currency_code: 'USD',
    billing_interval: 'month',
  })
  const before = b.get('subscriptions', sub.id)
  const cases: Array<[unknown, string, RegExp]> = [
    [{ action: 'explode' }, 'CLA_ERR_INVALID_INPUT', /action must be one of/],
    [{ action: 'cancel' }, 'CLA_ERR_INVALID_INPUT', /subscription cancel: \/effective_from/],
    [
      { action: 'pause', effective_from: 'immediately', resume_at: 'tomorrow' },
      'CLA_ERR_INVALID_INPUT',
      /RFC 3339/,
    ],
    [
      { action: 'change_items', items: [{ price_id: s.price.id, quantity: 1 }] },
      'CLA_ERR_INVALID_INPUT',
      /proration_billing_mode/,
    ],
    [
      {
        action: 'change_items',
        items: [{ price_id: 'pri_nope', quantity: 1 }],
        proration_billing_mode: 'do_not_bill',
      },
      'CLA_ERR_NOT_FOUND',
      /pri_nope/,
    ],
    [
      {
        action: 'change_items',
        items: [{ price_id: other.id, quantity: 1 }],
        proration_billing_mode: 'do_not_bill',
      },
      'CLA_ERR_INVALID_INPUT',
      /in USD; the subscription bills in EUR/,
    ],
    [
      { action: 'set_discount', discount_id: 'dsc_nope', effective_from: 'immediately' },
      'CLA_ERR_NOT_FOUND',
      /dsc_nope/,
    ],
    [{ action: 'resume' }, 'CLA_ERR_BILLING_CONFLICT', /nothing to resume/],
  ]
  for (const [input, code, message] of cases)
    await t.rejects(b.changeSubscription(sub.id, input), { code, message }, JSON.stringify(input))
  await t.rejects(b.changeSubscription('sbs_nope', { action: 'resume' }), {
    code: 'CLA_ERR_NOT_FOUND',
  })
  t.same(b.get('subscriptions', sub.id), before, 'nothing written')
  t.equal(listEvents(rig.db, { kind: 'subscription.change' }).length, 0)
})

t.test("items follow Paddle's snapshots: changed at Paddle, made at Paddle", async (t) => {
  const { rig, s, sub, pid, b } = await linkedSubscription(t)
  const second = await b.create('prices', {
    product_id: s.product.id,
    description: 'Extra seats',
    unit_amount: '300',
    currency_code: 'EUR',
    billing_interval: 'month',
  })
  const mark = rig.fake.state.events.length
  // someone changes it in Paddle's dashboard: two items, quantities 2 and 5
  await rig.client.patch(`/subscriptions/${pid}`, {
    items: [
      { price_id: s.price.paddle_id, quantity: 2 },
      { price_id: second.paddle_id, quantity: 5 },
    ],
    proration_billing_mode: 'prorated_next_billing_period',
  })
  deliverSince(rig, mark)
  t.same(
    (b.get('subscriptions', sub.id).items as Array<{ price_id: string; quantity: number }>)
      .map((i) => [i.price_id, i.quantity])
      .sort(),
    [
      [s.price.id, 2],
      [second.id, 5],
    ].sort(),
  )
})
