// Webhooks: the SDK's signature vector, the window both ways, several h1, rotation; then
// idempotency by event_id, out-of-order pairs, unknown types, mirrors of rows made at
// Paddle directly, and linking rows whose create answer was lost.
import { createHmac } from 'node:crypto'
import t from 'tap'
import { handlePaddleWebhook, verifyPaddleSignature } from '../../../lib/billing/webhooks.js'
import { AuditLog } from '../../../lib/audit/log.js'
import { billingRig, seed, type BillingRig } from '../../fixtures/billing.js'
import type { WebhookEvent } from '../../../scripts/fake-paddle/server.js'

const VECTOR = {
  secret: 'VALID_SECRET',
  ts: 1698796800,
  body: '{"data": ["1", "2"]}',
  h1: 'a300428748dce5c70e4da19bffd60769591ea969c99dea3105d0ec9612cf43f9',
}
const header = (h1s: string[], ts = VECTOR.ts) =>
  [`ts=${ts}`, ...h1s.map((h) => `h1=${h}`)].join(';')

t.test("the Node SDK's signature vector", async (t) => {
  const v = (o: Partial<Parameters<typeof verifyPaddleSignature>[0]>) => () =>
    verifyPaddleSignature({
      header: header([VECTOR.h1]),
      rawBody: VECTOR.body,
      secrets: [VECTOR.secret],
      toleranceS: 5,
      nowMs: VECTOR.ts * 1000,
      ...o,
    })
  t.equal(v({})(), VECTOR.ts, 'valid at ts')
  t.doesNotThrow(v({ nowMs: (VECTOR.ts + 5) * 1000 }), '+5 s passes under a 5 s window')
  t.throws(v({ nowMs: (VECTOR.ts + 6) * 1000 }), { code: 'CLA_ERR_PADDLE_SIGNATURE' }, '+6 s fails')
  t.throws(
    v({ nowMs: (VECTOR.ts - 6) * 1000 }),
    { code: 'CLA_ERR_PADDLE_SIGNATURE' },
    '-6 s fails (both directions)',
  )
  t.throws(
    v({ rawBody: '{"data":["1","2"]}' }),
    { code: 'CLA_ERR_PADDLE_SIGNATURE' },
    'other spacing fails',
  )
  t.throws(
    v({ secrets: ['OTHER_SECRET'] }),
    { code: 'CLA_ERR_PADDLE_SIGNATURE' },
    'other secret fails',
  )
  t.doesNotThrow(v({ secrets: ['OLD_SECRET', VECTOR.secret] }), 'rotation: any configured secret')
  t.doesNotThrow(v({ header: header(['0'.repeat(64), VECTOR.h1]) }), 'two h1: any may match')
  t.doesNotThrow(v({ rawBody: Buffer.from(VECTOR.body) }), 'raw bytes as a Buffer')
  t.throws(v({ header: header(['0'.repeat(64), '1'.repeat(64)]) }), {
    code: 'CLA_ERR_PADDLE_SIGNATURE',
  })
  t.throws(v({ header: undefined }), { code: 'CLA_ERR_PADDLE_SIGNATURE' }, 'missing header')
  t.throws(v({ header: `h1=${VECTOR.h1}` }), { code: 'CLA_ERR_PADDLE_SIGNATURE' }, 'no ts')
  t.throws(v({ header: 'ts=1698796800' }), { code: 'CLA_ERR_PADDLE_SIGNATURE' }, 'no h1')
  t.throws(v({ secrets: [] }), { code: 'CLA_ERR_PADDLE_NOT_CONFIGURED' })
})

function signed(rig: BillingRig, ev: unknown, tsMs = rig.clock.now()) {
  const body = Buffer.from(JSON.stringify(ev))
  const ts = Math.floor(tsMs / 1000)
  return {
    body,
    sig: `ts=${ts};h1=${createHmac('sha256', rig.fake.secret).update(`${ts}:`).update(body).digest('hex')}`,
  }
}
const deliver = (rig: BillingRig, ev: unknown) => {
  const { body, sig } = signed(rig, ev)
  return handlePaddleWebhook(rig.billing, body, sig)
}
const eventCount = (rig: BillingRig) =>
  (rig.db.prepare('SELECT count(*) AS n FROM paddle_events').get() as { n: number }).n

t.test('webhooks: duplicate, out-of-order, unknown type, bad signature, stale ts', async (t) => {
  const rig = await billingRig({ audit: true })
  t.teardown(rig.close)
  const audit = new AuditLog(rig.db)
  const b = rig.billing
  const s = await seed(b)
  const sub = await b.create('subscriptions', {
    customer_id: s.customer.id,
    address_id: s.address.id,
    currency_code: 'EUR',
    items: [{ price_id: s.price.id }],
  })
  const sid = String(sub.paddle_id)

  // duplicate: same event_id twice → one row, both 200
  const created = rig.fake.state.events.find((e) => e.event_type === 'subscription.created')!
  t.match(deliver(rig, created), { status: 200, outcome: 'applied' })
  t.match(deliver(rig, created), { status: 200, outcome: 'duplicate' })
  t.equal(eventCount(rig), 1)

  // out of order: past_due then canceled at Paddle; we receive canceled first
  const evPastDue = rig.fake.setSubscriptionStatus(sid, 'past_due')
  const evCanceled = rig.fake.setSubscriptionStatus(sid, 'canceled')
  const newer = evCanceled.find((e) => e.event_type === 'subscription.updated')!
  const older = evPastDue.find((e) => e.event_type === 'subscription.updated')!
  t.ok(newer.occurred_at > older.occurred_at)
  t.match(deliver(rig, newer), { outcome: 'applied' })
  t.equal(b.get('subscriptions', sub.id).status, 'canceled')
  t.match(deliver(rig, older), { status: 200, outcome: 'stale' }, 'older after newer')
  t.equal(b.get('subscriptions', sub.id).status, 'canceled', 'no roll back')
  t.equal(b.get('subscriptions', sub.id).paddle_occurred_at, newer.occurred_at)
  // the status event carrying the same snapshot at its own occurred_at
  t.match(
    deliver(
      rig,
      evCanceled.find((e) => e.event_type === 'subscription.canceled')!,
    ),
    { status: 200 },
  )
  t.equal(b.get('subscriptions', sub.id).status, 'canceled')

  // status flow in order: active → past_due → active (paid) on another subscription
  const sub2 = await b.create('subscriptions', {
    customer_id: s.customer.id,
    address_id: s.address.id,
    currency_code: 'EUR',
    items: [{ price_id: s.price.id }],
  })
  for (const [to, want] of [
    ['past_due', 'past_due'],
    ['active', 'active'],
    ['paused', 'paused'],
    ['canceled', 'canceled'],
  ] as const) {
    for (const e of rig.fake.setSubscriptionStatus(String(sub2.paddle_id), to)) deliver(rig, e)
    t.equal(b.get('subscriptions', sub2.id).status, want, `→ ${to}`)
  }

  // unknown event type and an unknown enum value: stored and acknowledged
  t.match(
    deliver(rig, {
      event_id: 'evt_unknown1',
      event_type: 'payout.paid',
      occurred_at: '2026-01-01T00:00:00.000000Z',
      data: { id: 'pay_1' },
    }),
    { status: 200, outcome: 'stored' },
  )
  const weird = { ...(rig.fake.state.subscriptions.get(sid) as object), status: 'hibernating' }
  const sub3 = await b.create('subscriptions', {
    customer_id: s.customer.id,
    address_id: s.address.id,
    currency_code: 'EUR',
    items: [{ price_id: s.price.id }],
  })
  t.match(
    deliver(rig, {
      event_id: 'evt_weird',
      event_type: 'subscription.updated',
      occurred_at: '2099-01-01T00:00:00.000001Z',
      data: { ...weird, id: sub3.paddle_id },
    }),
    { outcome: 'applied' },
  )
  t.equal(
    b.get('subscriptions', sub3.id).status,
    'hibernating',
    'a new enum value is stored, not refused',
  )

  // bad signature: 401, nothing stored
  const n = eventCount(rig)
  const { body } = signed(rig, {
    event_id: 'evt_bad',
    event_type: 'customer.updated',
    occurred_at: '2099-01-01T00:00:00Z',
    data: {},
  })
  t.throws(
    () =>
      handlePaddleWebhook(
        b,
        body,
        `ts=${Math.floor(rig.clock.now() / 1000)};h1=${'ab'.repeat(32)}`,
      ),
    { code: 'CLA_ERR_PADDLE_SIGNATURE', status: 401 },
  )
  // stale timestamp (a replay of a signed body an hour later)
  const old = signed(
    rig,
    {
      event_id: 'evt_old',
      event_type: 'customer.updated',
      occurred_at: '2099-01-01T00:00:00Z',
      data: {},
    },
    rig.clock.now() - 3_600_000,
  )
  t.throws(() => handlePaddleWebhook(b, old.body, old.sig), { code: 'CLA_ERR_PADDLE_SIGNATURE' })
  // two h1 (rotation at Paddle): one for an old secret, one right
  const two = signed(rig, {
    event_id: 'evt_two',
    event_type: 'payout.paid',
    occurred_at: '2026-01-01T00:00:00Z',
    data: {},
  })
  const h1 = two.sig.split(';h1=')[1]
  t.match(
    handlePaddleWebhook(
      b,
      two.body,
      `ts=${Math.floor(rig.clock.now() / 1000)};h1=${'cd'.repeat(32)};h1=${h1}`,
    ),
    { outcome: 'stored' },
  )
  t.equal(eventCount(rig), n + 1, 'the rejected deliveries stored nothing')
  t.notOk(
    rig.db.prepare("SELECT 1 FROM paddle_events WHERE event_id IN ('evt_bad', 'evt_old')").get(),
  )

  // every accepted delivery is in the audit log
  const logged = audit.list({ kind: 'webhook', limit: 1000 })
  t.equal(logged.length, eventCount(rig), 'one audit row per accepted event')
  t.match(
    logged.find((e) => e.reason === 'stale'),
    { actor: 'paddle', outcome: 'ok' },
  )
  t.equal(audit.verify().ok, true, 'the audit chain verifies')
})

t.test('webhooks: mirrors of objects made at Paddle, and links for lost answers', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  // made at Paddle directly → inserted as a mirror (unplaced: level 0, not an MSP)
  const direct = await rig.client.post<{ id: string }>('/customers', {
    email: 'direct@example.com',
    name: 'Direct',
  })
  const ev = rig.fake.state.events.find(
    (e) => e.event_type === 'customer.created' && e.data.id === direct.data.id,
  )!
  t.match(deliver(rig, ev), { outcome: 'inserted' })
  const mirror = rig.db
    .prepare('SELECT * FROM customers WHERE paddle_id = ?')
    .get(direct.data.id) as Record<string, unknown>
  t.equal(mirror.email, 'direct@example.com')
  t.equal(mirror.level, 0)
  t.equal(mirror.parent_id, null)
  t.equal(mirror.pending_since, null)
  t.match(mirror.id, /^cus_/)

  // an address made at Paddle for our customer: mirror points at our customer id
  const addr = await rig.client.post<{ id: string }>(
    `/customers/${String(s.customer.paddle_id)}/addresses`,
    { country_code: 'FR' },
  )
  deliver(
    rig,
    rig.fake.state.events.find((e) => e.data.id === addr.data.id)!,
  )
  t.equal(
    (
      rig.db.prepare('SELECT customer_id FROM addresses WHERE paddle_id = ?').get(addr.data.id) as {
        customer_id: string
      }
    ).customer_id,
    s.customer.id,
  )

  // our create reached Paddle but the answer was lost: the webhook links the row by our id
  rig.fake.failNext({ kind: 'drop', method: 'POST', path: '/customers' })
  const lost = await b.create('customers', { email: 'lost@example.com', parent_id: s.msp.id })
  t.equal(lost.paddle_id, null)
  const evLost = rig.fake.state.events.find(
    (e) =>
      e.event_type === 'customer.created' &&
      (e.data.custom_data as Record<string, unknown>)?.clavitor_id === lost.id,
  ) as WebhookEvent
  t.match(deliver(rig, evLost), { outcome: 'linked' })
  const linked = b.get('customers', lost.id)
  t.match(linked.paddle_id, /^ctm_/)
  t.equal(linked.parent_id, s.msp.id, 'our hierarchy kept')
  rig.clock.advance(6 * 60_000)
  await b.retryOnce()
  t.equal(b.get('customers', lost.id).state, 'synced')
  t.equal(rig.fake.countByCustomId('customers', lost.id), 1)

  // subscription.created (with transaction_id) links our subscription when the GET failed
  rig.fake.failNext({ kind: '5xx', method: 'GET', path: '/transactions', count: 1 })
  const sub = await b.create('subscriptions', {
    customer_id: s.customer.id,
    address_id: s.address.id,
    currency_code: 'EUR',
    items: [{ price_id: s.price.id }],
  })
  t.equal(sub.state, 'pending')
  t.equal(sub.paddle_id, null)
  const subEv = rig.fake.state.events.filter((e) => e.event_type === 'subscription.created').at(-1)!
  t.ok(subEv.data.transaction_id)
  t.match(deliver(rig, subEv), { outcome: 'linked' })
  const subNow = b.get('subscriptions', sub.id)
  t.equal(subNow.paddle_id, subEv.data.id)
  t.equal(subNow.state, 'synced', 'linked by the webhook, nothing left to push')

  // a snapshot for a pending row only takes Paddle-owned columns
  rig.fake.failNext({ kind: '5xx', count: 1 })
  const pend = await b.update('customers', s.customer.id, { name: 'Local edit' })
  t.equal(pend.state, 'pending')
  const upd = {
    ...(rig.fake.state.customers.get(String(s.customer.paddle_id)) as object),
    name: 'Paddle name',
  }
  deliver(rig, {
    event_id: 'evt_pend',
    event_type: 'customer.updated',
    occurred_at: '2099-01-01T00:00:00.000000Z',
    data: upd,
  })
  t.equal(
    b.get('customers', s.customer.id).name,
    'Local edit',
    'our pending edit is not overwritten',
  )
})

t.test(
  'a customer mirrored from Paddle and then created here with the same email: conflict, not a second link',
  async (t) => {
    const rig = await billingRig()
    t.teardown(rig.close)
    const b = rig.billing
    const direct = await rig.client.post<{ id: string }>('/customers', {
      email: 'twice@example.com',
    })
    deliver(
      rig,
      rig.fake.state.events.find((e) => e.data.id === direct.data.id)!,
    )
    const mirror = rig.db
      .prepare('SELECT id FROM customers WHERE paddle_id = ?')
      .get(direct.data.id) as { id: string }
    const mine = await b.create('customers', { email: 'twice@example.com' })
    t.equal(mine.state, 'failed')
    t.match(mine.last_error, new RegExp(`CLA_ERR_BILLING_CONFLICT.*${mirror.id}`))
    t.equal(rig.fake.state.customers.size, 1)
  },
)

t.test(
  'a snapshot that cannot be applied is kept with its error and acknowledged (no endless retries)',
  async (t) => {
    const rig = await billingRig({ audit: true })
    t.teardown(rig.close)
    // a price snapshot without unit_price for a product unknown here: our mirror insert refuses it
    const res = deliver(rig, {
      event_id: 'evt_broken',
      event_type: 'price.created',
      occurred_at: '2026-01-01T00:00:00.000000Z',
      data: { id: 'pri_01broken', product_id: null, description: null, status: 'active' },
    })
    t.equal(res.status, 200)
    t.match(res.outcome, /^error: /)
    const row = rig.db
      .prepare('SELECT outcome, payload FROM paddle_events WHERE event_id = ?')
      .get('evt_broken') as { outcome: string; payload: string }
    t.match(row.outcome, /^error: .*NOT NULL/)
    t.ok(row.payload.includes('pri_01broken'), 'payload kept for a later replay')
    t.notOk(
      rig.db.prepare("SELECT 1 FROM prices WHERE paddle_id = 'pri_01broken'").get(),
      'nothing half-applied',
    )
    const { AuditLog } = await import('../../../lib/audit/log.js')
    t.match(new AuditLog(rig.db).list({ kind: 'webhook' })[0], {
      outcome: 'error',
      reason: 'error',
    })
  },
)

// --- parked events (issue 11, item 8) -------------------------------------------------------

const paddleEvent = (rig: BillingRig, id: string) =>
  rig.db
    .prepare('SELECT outcome, occurred_at, payload FROM paddle_events WHERE event_id = ?')
    .get(id) as { outcome: string; occurred_at: string; payload: string } | undefined

t.test(
  'a signed event whose occurred_at is not a timestamp is parked, and order still holds after it',
  async (t) => {
    const rig = await billingRig({ audit: true })
    t.teardown(rig.close)
    const audit = new AuditLog(rig.db)
    const b = rig.billing
    const s = await seed(b)
    const sub = await b.create('subscriptions', {
      customer_id: s.customer.id,
      address_id: s.address.id,
      currency_code: 'EUR',
      items: [{ price_id: s.price.id }],
    })
    const sid = String(sub.paddle_id)
    // two real updates at Paddle: past_due (older), then active again (newer)
    const older = rig.fake
      .setSubscriptionStatus(sid, 'past_due')
      .find((e) => e.event_type === 'subscription.updated')!
    const newer = rig.fake
      .setSubscriptionStatus(sid, 'active')
      .find((e) => e.event_type === 'subscription.updated')!
    t.match(deliver(rig, newer), { outcome: 'applied' })
    const before = b.get('subscriptions', sub.id)

    const snapshot = { ...(rig.fake.state.subscriptions.get(sid) as object), status: 'paused' }
    const bad = [
      ['evt_word', 'yesterday'],
      ['evt_feb30', '2099-02-30T00:00:00Z'], // Date.parse would roll it over to 1 March
      ['evt_hour24', '2099-01-01T24:00:00Z'],
      ['evt_number', 4102444800],
      ['evt_missing', undefined],
    ] as const
    for (const [id, occurred_at] of bad) {
      if (id === 'evt_feb30') {
        // the row's order is intact: the older real event is still older
        t.match(deliver(rig, older), { outcome: 'stale' }, 'an older event after parked ones')
        t.equal(b.get('subscriptions', sub.id).status, 'active', 'no roll back')
      }
      const res = deliver(rig, {
        event_id: id,
        event_type: 'subscription.updated',
        ...(occurred_at === undefined ? {} : { occurred_at }),
        data: snapshot,
      })
      t.match(
        res,
        { status: 200, outcome: 'parked: occurred_at_invalid', alarm: /not an RFC 3339/ },
        `${id}: parked, answered 200`,
      )
      t.match(paddleEvent(rig, id), { outcome: 'parked: occurred_at_invalid' }, 'kept')
      t.ok(paddleEvent(rig, id)!.payload.includes('"paused"'), 'with its payload')
    }
    t.same(b.get('subscriptions', sub.id), before, 'nothing of them applied')
    t.match(
      deliver(rig, { event_id: 'evt_word', event_type: 'subscription.updated', data: snapshot }),
      { outcome: 'duplicate' },
      'a redelivery of a parked event is a duplicate',
    )

    const alarms = audit.list({ kind: 'webhook', limit: 100 }).filter((e) => e.outcome === 'alarm')
    t.equal(alarms.length, bad.length, 'one alarm row per parked event')
    t.match(alarms[0], {
      actor: 'paddle',
      reason: 'parked',
      data: /"parked":"occurred_at_invalid"/,
    })
    t.equal(audit.verify().ok, true)
  },
)

t.test('a row marked with a non-timestamp by an older build recovers order', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  const sub = await b.create('subscriptions', {
    customer_id: s.customer.id,
    address_id: s.address.id,
    currency_code: 'EUR',
    items: [{ price_id: s.price.id }],
  })
  const sid = String(sub.paddle_id)
  rig.db.prepare("UPDATE subscriptions SET paddle_occurred_at = 'garbage' WHERE id = ?").run(sub.id)
  const older = rig.fake
    .setSubscriptionStatus(sid, 'past_due')
    .find((e) => e.event_type === 'subscription.updated')!
  const newer = rig.fake
    .setSubscriptionStatus(sid, 'canceled')
    .find((e) => e.event_type === 'subscription.updated')!
  t.match(deliver(rig, newer), { outcome: 'applied' }, 'a valid event replaces the mark')
  t.equal(b.get('subscriptions', sub.id).paddle_occurred_at, newer.occurred_at)
  t.match(deliver(rig, older), { outcome: 'stale' }, 'and order holds from there on')
})

t.test(
  'a signed snapshot never moves a subscription (or an address) to another customer',
  async (t) => {
    const rig = await billingRig({ audit: true })
    t.teardown(rig.close)
    const audit = new AuditLog(rig.db)
    const b = rig.billing
    const s = await seed(b)
    const other = await b.create('customers', { email: 'other@example.com', parent_id: s.msp.id })
    t.match(other.paddle_id, /^ctm_/)
    const sub = await b.create('subscriptions', {
      customer_id: s.customer.id,
      address_id: s.address.id,
      currency_code: 'EUR',
      items: [{ price_id: s.price.id }],
    })
    const sid = String(sub.paddle_id)
    const before = b.get('subscriptions', sub.id)
    const snap = rig.fake.state.subscriptions.get(sid) as Record<string, unknown>
    const cases = [
      ['evt_move_ours', String(other.paddle_id)], // another of our customers
      ['evt_move_foreign', 'ctm_01unknowntous000000000000'], // a customer we do not know
    ] as const
    for (const [id, customer] of cases) {
      const res = deliver(rig, {
        event_id: id,
        event_type: 'subscription.updated',
        occurred_at: '2099-01-01T00:00:00.000001Z',
        data: { ...snap, customer_id: customer, status: 'paused' },
      })
      t.match(
        res,
        { status: 200, outcome: 'parked: customer_changed', alarm: new RegExp(customer) },
        `${id}: parked`,
      )
      t.match(paddleEvent(rig, id), { outcome: 'parked: customer_changed' })
    }
    const now = b.get('subscriptions', sub.id)
    t.equal(now.customer_id, s.customer.id, 'still our customer')
    t.same(now, before, 'nothing of the snapshot applied')
    // the same snapshot with our customer applies as usual
    t.match(
      deliver(rig, {
        event_id: 'evt_same_customer',
        event_type: 'subscription.updated',
        occurred_at: '2099-01-01T00:00:00.000002Z',
        data: { ...snap, status: 'paused' },
      }),
      { outcome: 'applied' },
    )
    t.equal(b.get('subscriptions', sub.id).status, 'paused')

    // an address belongs to one customer at Paddle too
    const addr = rig.fake.state.addresses.get(String(s.address.paddle_id)) as Record<
      string,
      unknown
    >
    t.match(
      deliver(rig, {
        event_id: 'evt_move_address',
        event_type: 'address.updated',
        occurred_at: '2099-01-01T00:00:00.000003Z',
        data: { ...addr, customer_id: String(other.paddle_id), city: 'Elsewhere' },
      }),
      { outcome: 'parked: customer_changed' },
    )
    t.match(b.get('addresses', s.address.id), { customer_id: s.customer.id, city: 'Berlin' })

    const alarms = audit.list({ kind: 'webhook', limit: 100 }).filter((e) => e.outcome === 'alarm')
    t.equal(alarms.length, 3)
    t.match(alarms.at(-1), { reason: 'parked', data: /"parked":"customer_changed"/ })
  },
)
