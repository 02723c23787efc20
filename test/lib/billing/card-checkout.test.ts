// Selling to a card customer (docs/billing.md "Subscriptions"): our subscription row first,
// then a Paddle transaction with automatic collection whose checkout link we return; no
// vault registers before the customer pays; once paid, the subscription.created webhook
// links Paddle's subscription to our row and it is active.
import t from 'tap'
import { billingRig, deliverSigned, seed, type BillingRig } from '../../fixtures/billing.js'
import type { WebhookEvent } from '../../../scripts/fake-paddle/server.js'

const deliver = (rig: BillingRig, events: WebhookEvent[]): string[] =>
  events.map((ev) => deliverSigned(rig, ev).outcome)

t.test(
  'a card subscription: checkout link, inactive until paid, linked by the webhook',
  async (t) => {
    const rig = await billingRig()
    t.teardown(rig.close)
    const b = rig.billing
    const s = await seed(b)
    const sub = await b.create('subscriptions', {
      customer_id: s.customer.id,
      address_id: s.address.id,
      currency_code: 'EUR',
      collection_mode: 'automatic',
      items: [{ price_id: s.price.id, quantity: 2 }],
    })
    t.match(sub, {
      status: 'incomplete',
      collection_mode: 'automatic',
      paddle_id: null,
      state: 'pending',
      last_error: /waiting for the customer to pay at checkout/,
      checkout_url: /^https:\/\/pay\.fake-paddle\.invalid\/checkout\?_ptxn=txn_/,
    })
    const txn = b.get('transactions', String(sub.origin_transaction_id))
    t.match(txn, { collection_mode: 'automatic', state: 'synced', paddle_id: /^txn_/ })
    t.equal(rig.fake.state.subscriptions.size, 0, 'no subscription at Paddle before payment')
    t.equal(rig.fake.state.transactions.get(String(txn.paddle_id))?.billing_details, null)

    // the customer pays; Paddle's webhooks link and activate our row
    const events = rig.fake.payTransaction(String(txn.paddle_id))
    t.same(
      events.map((e) => e.event_type),
      ['transaction.paid', 'transaction.completed', 'subscription.created'],
    )
    t.ok(deliver(rig, events).includes('linked'))
    t.match(b.get('subscriptions', sub.id), {
      status: 'active',
      state: 'synced',
      paddle_id: /^sub_/,
      collection_mode: 'automatic',
      items: [{ price_id: s.price.id, quantity: 2 }],
    })
    t.throws(() => rig.fake.payTransaction(String(txn.paddle_id)), /not awaiting a card payment/)
  },
)

t.test('an invoice subscription stays the default', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const s = await seed(rig.billing)
  const sub = await rig.billing.create('subscriptions', {
    customer_id: s.customer.id,
    address_id: s.address.id,
    currency_code: 'EUR',
    items: [{ price_id: s.price.id, quantity: 1 }],
  })
  t.match(sub, { status: 'active', collection_mode: 'manual', state: 'synced', checkout_url: null })
  await t.rejects(
    rig.billing.create('subscriptions', {
      customer_id: s.customer.id,
      address_id: s.address.id,
      currency_code: 'EUR',
      collection_mode: 'cheque',
      items: [{ price_id: s.price.id, quantity: 1 }],
    }),
    { code: 'CLA_ERR_INVALID_INPUT' },
  )
})
