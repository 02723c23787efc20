// Reconcile through Paddle's event stream (lib/billing/reconcile.ts, GET /events after the
// stored cursor): a missed webhook repaired from the stream, the cursor moved and asked
// for on the next pass, an event that came as a webhook not applied twice, a pass that
// fails mid-stream keeping the cursor at the last event applied, a dry run and a pass
// limited to some entities leaving the cursor alone.
import t from 'tap'
import { billingRig, deliverSigned, seed } from '../../fixtures/billing.js'
import { eventCursor } from '../../../lib/billing/reconcile.js'
import { PaddleClient } from '../../../lib/billing/paddle-client.js'
import { claError } from '../../../lib/errors.js'

type Stored = { event_id: string; outcome: string; source: string }

t.test(
  'a missed webhook is repaired from GET /events; the cursor moves; nothing twice',
  async (t) => {
    const rig = await billingRig()
    t.teardown(rig.close)
    const b = rig.billing
    const s = await seed(b)
    const stored = () =>
      rig.db
        .prepare('SELECT event_id, outcome, source FROM paddle_events ORDER BY event_id')
        .all() as Stored[]
    t.equal(eventCursor(rig.db), null, 'no cursor before the first pass')

    // renamed in Paddle's dashboard; the webhook never reaches us
    await rig.client.patch(`/customers/${String(s.customer.paddle_id)}`, { name: 'Acme Renamed' })
    const all = rig.fake.state.events.map((e) => e.event_id)
    const r = await b.reconcile()
    t.match(r.events, { after: null, cursor: all.at(-1), seen: all.length, applied: 1, parked: 0 })
    t.same(r.changes, [['customers', s.customer.paddle_id, 'applied']])
    t.match(r.entities.customers, { applied: 0 }, 'the stream repaired it before the lists')
    t.equal(b.get('customers', s.customer.id).name, 'Acme Renamed')
    t.match(eventCursor(rig.db), { event_id: all.at(-1) }, 'the cursor is the last event')
    t.same(
      stored().map((e) => [e.event_id, e.source]),
      all.map((id) => [id, 'events']),
      'every event stored once, through the webhook path',
    )

    // the next pass asks for the events after the cursor: none
    const again = await b.reconcile()
    t.match(again.events, { after: all.at(-1), cursor: all.at(-1), seen: 0 })
    t.same(again.changes, [])
    t.ok(
      rig.fake.state.requests.some(
        (q) => q.path.startsWith('/events?') && q.path.includes(`after=${all.at(-1)}`),
      ),
      'GET /events?after=<cursor>',
    )

    // a new change whose webhook did arrive: the stream finds it stored, a duplicate
    await rig.client.patch(`/customers/${String(s.customer.paddle_id)}`, { name: 'Acme Again' })
    const ev = rig.fake.state.events.at(-1)!
    t.equal(deliverSigned(rig, ev).outcome, 'applied')
    const third = await b.reconcile()
    t.match(third.events, { seen: 1, duplicate: 1, applied: 0, cursor: ev.event_id })
    t.same(third.changes, [])
    t.same(
      stored()
        .filter((e) => e.event_id === ev.event_id)
        .map((e) => [e.outcome, e.source]),
      [['applied', 'webhook']],
      'applied once, by the webhook',
    )
    t.equal(b.get('customers', s.customer.id).name, 'Acme Again')
  },
)

t.test('a pass that fails mid-stream keeps the cursor at the last event applied', async (t) => {
  // pages of 2 events; the second GET /events fails once
  let calls = 0
  class FlakyEvents extends PaddleClient {
    override async request<T>(method: string, path: string, body?: unknown) {
      if (path.includes('/events') && ++calls === 2)
        throw claError('CLA_ERR_PADDLE_UNAVAILABLE', 'injected: Paddle down for page 2')
      return super.request<T>(method, path, body)
    }
  }
  const rig = await billingRig({ fake: { maxPerPage: 2 } })
  t.teardown(rig.close)
  const flaky = new FlakyEvents({
    baseUrl: rig.fake.url,
    apiKey: 'pdl_sdbx_apikey_test',
    clock: rig.clock,
  })
  const { Billing } = await import('../../../lib/billing/billing.js')
  const b = new Billing({
    db: rig.db,
    paddle: flaky,
    clock: rig.clock,
    webhook: { secrets: [rig.fake.secret] },
  })
  await seed(b)
  const all = rig.fake.state.events.map((e) => e.event_id)
  t.ok(all.length > 4, `${all.length} events`)
  const count = () =>
    rig.db.prepare("SELECT count(*) FROM paddle_events WHERE source = 'events'").pluck().get()

  await t.rejects(b.reconcile(), { code: 'CLA_ERR_PADDLE_UNAVAILABLE' })
  t.equal(eventCursor(rig.db)?.event_id, all[1], 'the last event of the page applied')
  t.equal(count(), 2, 'the first page only')

  const r = await b.reconcile()
  t.match(r.events, { after: all[1], cursor: all.at(-1), seen: all.length - 2, duplicate: 0 })
  t.equal(count(), all.length, 'each event once')
})

t.test('a dry run and a pass limited to some entities leave the cursor alone', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  await rig.client.patch(`/customers/${String(s.customer.paddle_id)}`, { name: 'Acme Renamed' })
  const count = () => rig.db.prepare('SELECT count(*) FROM paddle_events').pluck().get()

  const dry = await b.reconcile({ dryRun: true })
  t.match(dry.events, { after: null, applied: 1 }, 'what the stream would do')
  t.same(dry.changes, [['customers', s.customer.paddle_id, 'applied']])
  t.equal(eventCursor(rig.db), null, 'no cursor stored')
  t.equal(count(), 0, 'no event stored')
  t.equal(b.get('customers', s.customer.id).name, 'Acme')

  const asked = () => rig.fake.state.requests.filter((q) => q.path.startsWith('/events')).length
  const before = asked()
  const some = await b.reconcile({ entities: ['products'] })
  t.equal(some.events, null, 'the stream is read by whole passes only')
  t.equal(asked(), before, 'no GET /events')
  t.equal(eventCursor(rig.db), null)
  t.equal(count(), 0)
})
