// Webhook events that could not be applied: an address or business event without
// customer_id is parked (not a failed insert), the failed ones are listed, and a replay
// applies one again after a fix (lib/billing/webhooks.ts listEvents, replayEvent).
import t from 'tap'
import { listEvents as listStored, replayEvent } from '../../../lib/billing/webhooks.js'
import { listEvents as listAudit } from '../../../lib/audit/log.js'
import { billingRig, deliverSigned, seed, type BillingRig } from '../../fixtures/billing.js'

const deliver = deliverSigned

const at = (rig: BillingRig, s = 0) => new Date(rig.clock.now() + s * 1000).toISOString()

t.test(
  'address and business events without customer_id are parked, listed, replayable',
  async (t) => {
    const rig = await billingRig({ audit: true })
    t.teardown(rig.close)
    const address = {
      event_id: 'evt_01address0000000000000000',
      event_type: 'address.created',
      occurred_at: at(rig),
      notification_id: 'ntf_1',
      data: { id: 'add_01madeatpaddle000000000000', country_code: 'DE', status: 'active' },
    }
    const r = deliver(rig, address)
    t.match(r, { status: 200, outcome: 'parked: customer_unknown' })
    t.match(r.alarm, /names no customer_id; it cannot be placed/)
    const business = {
      event_id: 'evt_01business000000000000000',
      event_type: 'business.created',
      occurred_at: at(rig, 1),
      notification_id: 'ntf_2',
      data: { id: 'biz_01madeatpaddle000000000000', name: 'Acme GmbH', status: 'active' },
    }
    t.match(deliver(rig, business), { outcome: 'parked: customer_unknown' })
    t.equal(rig.db.prepare('SELECT COUNT(*) FROM addresses').pluck().get(), 0, 'no half row')

    const failed = listStored(rig.billing, { failed: true })
    t.same(
      failed.map((e) => [e.event_id, e.outcome]),
      [
        [business.event_id, 'parked: customer_unknown'],
        [address.event_id, 'parked: customer_unknown'],
      ],
    )
    // replayed as is, it is still parked: nothing to place it under
    t.match(replayEvent(rig.billing, address.event_id), {
      before: 'parked: customer_unknown',
      outcome: 'parked: customer_unknown',
    })
  },
)

t.test('an event that failed is applied by a replay after the fix; rules hold', async (t) => {
  const rig = await billingRig({ audit: true })
  t.teardown(rig.close)
  const s = await seed(rig.billing)
  const ev = {
    event_id: 'evt_01customerupdate000000000',
    event_type: 'customer.updated',
    occurred_at: at(rig, 5),
    notification_id: 'ntf_3',
    data: {
      ...rig.fake.state.customers.get(String(s.customer.paddle_id)),
      name: 'Acme Renamed',
    },
  }
  t.match(deliver(rig, ev), { outcome: 'applied' })
  t.throws(() => replayEvent(rig.billing, ev.event_id), {
    code: 'CLA_ERR_INVALID_INPUT',
    message: /only failed or parked events/,
  })
  t.throws(() => replayEvent(rig.billing, 'evt_nope'), { code: 'CLA_ERR_NOT_FOUND' })

  // an older build failed on it (the row kept its old name); after the fix, a replay
  rig.db
    .prepare("UPDATE customers SET name = 'Acme', paddle_occurred_at = NULL WHERE id = ?")
    .run(s.customer.id)
  rig.db
    .prepare("UPDATE paddle_events SET outcome = 'error: no such column: x' WHERE event_id = ?")
    .run(ev.event_id)
  t.same(
    listStored(rig.billing, { failed: true }).map((e) => e.event_id),
    [ev.event_id],
  )
  const r = replayEvent(rig.billing, ev.event_id)
  t.match(r, { before: 'error: no such column: x', outcome: 'applied' })
  t.equal(rig.billing.get('customers', s.customer.id).name, 'Acme Renamed')
  t.same(listStored(rig.billing, { failed: true }), [])
  const audit = listAudit(rig.db, { kind: 'webhook', reason: 'replayed' })
  t.equal(audit.length, 1)
  t.match(JSON.parse(String(audit[0]!.data)), {
    before: 'error: no such column: x',
    after: 'applied',
  })
})
