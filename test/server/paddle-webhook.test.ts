// POST /webhooks/paddle in the core's Fastify app: raw bytes reach the signature check
// (odd spacing survives), a bad signature is 401 and stores nothing, other routes keep
// normal JSON parsing; and end to end, the fake Paddle's signed deliveries (duplicated,
// reordered) land once each over real HTTP.
import { execFileSync } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { openCore } from '../../lib/core.js'
import { buildCoreApp } from '../../server/app.js'
import { startFakePaddle } from '../../scripts/fake-paddle/server.js'

const SECRET = 'pdl_ntfset_test_secret'
const sign = (body: string, secret = SECRET, ts = Math.floor(Date.now() / 1000)) =>
  `ts=${ts};h1=${createHmac('sha256', secret).update(`${ts}:${body}`).digest('hex')}`

async function rig(t: { teardown(fn: () => unknown): void }, paddle: Record<string, unknown> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'clavitor-webhook-'))
  const core = await openCore({
    dataDir: dir,
    paddle: { webhookSecrets: ['old_secret', SECRET], ...paddle },
  })
  const app = await buildCoreApp({ core })
  t.teardown(async () => {
    await app.close()
    await core.close()
    removeDir(dir)
  })
  return { core, app }
}
/** The store seals its folders (chattr +i/+a): clear them before removing the temp dir. */
function removeDir(dir: string): void {
  try {
    execFileSync('chattr', ['-R', '-i', '-a', dir], { stdio: 'ignore' })
  } catch {
    // not sealed, or no chattr here
  }
  rmSync(dir, { recursive: true, force: true })
}
const count = (core: Awaited<ReturnType<typeof openCore>>) =>
  (core.db.prepare('SELECT count(*) AS n FROM paddle_events').get() as { n: number }).n

t.test('raw body, real signature, 401 on a bad one, JSON elsewhere untouched', async (t) => {
  const { core, app } = await rig(t)
  app.post('/echo-json', async (req) => ({ got: req.body }))
  // spacing that a re-serialisation would lose
  const body =
    '{"event_id":  "evt_01hv8x2acma2q1r8j5s3x7f2bd", "event_type": "customer.created", "occurred_at": "2026-01-01T00:00:00.000001Z",\n "notification_id": "ntf_01", "data": {"id": "ctm_01hv8x2acma2q1r8j5s3x7f2bd", "email": "a@example.com", "status": "active", "custom_data": null}}'
  const ok = await app.inject({
    method: 'POST',
    url: '/webhooks/paddle',
    headers: { 'content-type': 'application/json', 'paddle-signature': sign(body) },
    payload: body,
  })
  t.equal(ok.statusCode, 200, ok.body)
  t.match(ok.json(), { ok: true, outcome: 'inserted' })
  t.equal(count(core), 1)
  const again = await app.inject({
    method: 'POST',
    url: '/webhooks/paddle',
    headers: { 'content-type': 'application/json', 'paddle-signature': sign(body) },
    payload: body,
  })
  t.equal(again.statusCode, 200, 'a duplicate still gets 200')
  t.match(again.json(), { outcome: 'duplicate' })
  t.equal(count(core), 1)

  const other = body.replace('evt_01hv8x2acma2q1r8j5s3x7f2bd', 'evt_02hv8x2acma2q1r8j5s3x7f2bd')
  const bad = await app.inject({
    method: 'POST',
    url: '/webhooks/paddle',
    headers: { 'content-type': 'application/json', 'paddle-signature': sign(other, 'wrong') },
    payload: other,
  })
  t.equal(bad.statusCode, 401)
  t.equal(bad.json().error.code, 'CLA_ERR_PADDLE_SIGNATURE')
  const none = await app.inject({
    method: 'POST',
    url: '/webhooks/paddle',
    headers: { 'content-type': 'application/json' },
    payload: other,
  })
  t.equal(none.statusCode, 401)
  const stale = await app.inject({
    method: 'POST',
    url: '/webhooks/paddle',
    headers: {
      'content-type': 'application/json',
      'paddle-signature': sign(other, SECRET, Math.floor(Date.now() / 1000) - 3600),
    },
    payload: other,
  })
  t.equal(stale.statusCode, 401)
  t.equal(count(core), 1, 'nothing stored for rejected deliveries')

  const ts = Math.floor(Date.now() / 1000)
  const goodH1 = sign(other).split(';h1=')[1]
  const two = await app.inject({
    method: 'POST',
    url: '/webhooks/paddle',
    headers: {
      'content-type': 'application/json',
      'paddle-signature': `ts=${ts};h1=${'0'.repeat(64)};h1=${goodH1}`,
    },
    payload: other,
  })
  t.equal(two.statusCode, 200, 'two h1, one matching')

  const echo = await app.inject({ method: 'POST', url: '/echo-json', payload: { a: 1 } })
  t.same(echo.json(), { got: { a: 1 } }, 'other routes still get parsed JSON')
})

t.test('no webhook secret configured: 503, nothing stored', async (t) => {
  const { core, app } = await rig(t, { webhookSecrets: [] })
  const body =
    '{"event_id":"evt_x","event_type":"a.b","occurred_at":"2026-01-01T00:00:00Z","data":{}}'
  const res = await app.inject({
    method: 'POST',
    url: '/webhooks/paddle',
    headers: { 'content-type': 'application/json', 'paddle-signature': sign(body) },
    payload: body,
  })
  t.equal(res.statusCode, 503)
  t.equal(count(core), 0)
})

t.test(
  'end to end over HTTP: the fake sends signed webhooks, duplicated and reordered',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clavitor-webhook-e2e-'))
    // the fake needs the app's URL, the core needs the fake's: start the app on a fixed port first
    const core0 = await openCore({ dataDir: dir, paddle: { webhookSecrets: [SECRET] } })
    const app = await buildCoreApp({ core: core0 })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const port = (app.server.address() as { port: number }).port
    const fake = await startFakePaddle({
      secret: SECRET,
      webhookUrl: `http://127.0.0.1:${port}/webhooks/paddle`,
    })
    t.teardown(async () => {
      await fake.close()
      await app.close()
      await core0.close()
      removeDir(dir)
    })
    // a second Billing on the same database, pointed at the fake (the app's keeps serving webhooks)
    const { openBilling } = await import('../../lib/billing/config.js')
    const billing = openBilling(core0.db, {
      apiUrl: fake.url,
      apiKey: 'k',
      webhookSecrets: [SECRET],
    })

    fake.setWebhookMode({ duplicate: true })
    const product = await billing.create('products', { name: 'Vault' })
    const price = await billing.create('prices', {
      product_id: product.id,
      description: 'monthly',
      unit_amount: '900',
      currency_code: 'USD',
      billing_interval: 'month',
    })
    const cust = await billing.create('customers', { email: 'e2e@example.com' })
    const addr = await billing.create('addresses', { customer_id: cust.id, country_code: 'US' })
    const sub = await billing.create('subscriptions', {
      customer_id: cust.id,
      address_id: addr.id,
      currency_code: 'USD',
      items: [{ price_id: price.id }],
    })
    t.equal(sub.state, 'synced')

    fake.setWebhookMode({ hold: true })
    fake.setSubscriptionStatus(String(sub.paddle_id), 'past_due')
    fake.setSubscriptionStatus(String(sub.paddle_id), 'canceled')
    const statuses = await fake.flushWebhooks({ reverse: true, duplicate: true })
    t.ok(
      statuses.every((s) => s === 200),
      `all deliveries answered 200 (${statuses.join(',')})`,
    )
    await fake.close() // waits for in-flight deliveries
    const n = (core0.db.prepare('SELECT count(*) AS n FROM paddle_events').get() as { n: number }).n
    t.equal(n, fake.state.events.length, 'each event recorded once despite duplicates')
    t.equal(
      billing.get('subscriptions', sub.id).status,
      'canceled',
      'newest state wins despite reverse order',
    )
    const outcomes = core0.db
      .prepare('SELECT outcome, count(*) AS n FROM paddle_events GROUP BY outcome')
      .all()
    t.ok(outcomes.length > 0)
  },
)

t.test(
  'parked over HTTP: a bad occurred_at or a customer move is answered 200, kept, audited and logged loudly',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clavitor-webhook-'))
    const core = await openCore({ dataDir: dir, paddle: { webhookSecrets: [SECRET] } })
    const lines: string[] = []
    const app = await buildCoreApp({
      core,
      fastify: { logger: { level: 'info', stream: { write: (l: string) => lines.push(l) } } },
    })
    t.teardown(async () => {
      await app.close()
      await core.close()
      removeDir(dir)
    })
    const post = (ev: Record<string, unknown>) => {
      const body = JSON.stringify(ev)
      return app.inject({
        method: 'POST',
        url: '/webhooks/paddle',
        headers: { 'content-type': 'application/json', 'paddle-signature': sign(body) },
        payload: body,
      })
    }
    // mirrors made at Paddle: two customers and a subscription of the first
    for (const [i, id] of ['ctm_01first', 'ctm_01second'].entries())
      t.equal(
        (
          await post({
            event_id: `evt_c${i}`,
            event_type: 'customer.created',
            occurred_at: '2026-01-01T00:00:00.000001Z',
            data: { id, email: `${id}@example.com`, status: 'active' },
          })
        ).json().outcome,
        'inserted',
      )
    const sub = {
      id: 'sub_01mirror',
      status: 'active',
      customer_id: 'ctm_01first',
      currency_code: 'EUR',
      collection_mode: 'automatic',
    }
    const made = await post({
      event_id: 'evt_s0',
      event_type: 'subscription.created',
      occurred_at: '2026-01-01T00:00:00.000002Z',
      data: sub,
    })
    t.equal(made.json().outcome, 'inserted', made.body)

    const bad = await post({
      event_id: 'evt_bad_time',
      event_type: 'subscription.updated',
      occurred_at: 'soon',
      data: { ...sub, status: 'paused' },
    })
    t.equal(bad.statusCode, 200, 'answered 200: Paddle does not retry it')
    t.same(bad.json(), { ok: true, outcome: 'parked: occurred_at_invalid' })
    const moved = await post({
      event_id: 'evt_moved',
      event_type: 'subscription.updated',
      occurred_at: '2026-01-02T00:00:00.000000Z',
      data: { ...sub, customer_id: 'ctm_01second', status: 'paused' },
    })
    t.equal(moved.statusCode, 200)
    t.same(moved.json(), { ok: true, outcome: 'parked: customer_changed' })

    const row = core.db
      .prepare(
        'SELECT s.status, c.paddle_id AS customer FROM subscriptions s JOIN customers c ON c.id = s.customer_id WHERE s.paddle_id = ?',
      )
      .get('sub_01mirror')
    t.same(row, { status: 'active', customer: 'ctm_01first' }, 'neither applied')
    t.same(
      core.db
        .prepare(
          "SELECT event_id, outcome FROM paddle_events WHERE outcome LIKE 'parked:%' ORDER BY event_id",
        )
        .all(),
      [
        { event_id: 'evt_bad_time', outcome: 'parked: occurred_at_invalid' },
        { event_id: 'evt_moved', outcome: 'parked: customer_changed' },
      ],
    )
    t.equal(
      core.audit.list({ kind: 'webhook', limit: 100 }).filter((e) => e.outcome === 'alarm').length,
      2,
      'two alarm rows',
    )
    const loud = lines.map((l) => JSON.parse(l)).filter((l) => l.alarm === true)
    t.match(loud, [
      { level: 50, event_id: 'evt_bad_time', outcome: 'parked: occurred_at_invalid' },
      { level: 50, event_id: 'evt_moved', msg: /ctm_01second/ },
    ])
  },
)
