// The billing CLI and `core serve` as processes: create prints our row with its pending
// state, bad input exits 2 with one line, retry --once converges, and `core serve` takes
// the fake Paddle's signed webhooks over HTTP and shuts down cleanly on SIGTERM.
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { execa } from 'execa'
import t from 'tap'
import { Billing } from '../../lib/billing/billing.js'
import { handlePaddleWebhook } from '../../lib/billing/webhooks.js'
import { openDb } from '../../lib/db/open.js'
import { startFakePaddle } from '../../scripts/fake-paddle/server.js'

const CLI = new URL('../../scripts/clavitor', import.meta.url).pathname

function tempDir(t: { teardown(fn: () => unknown): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'clavitor-billing-cli-'))
  t.teardown(() => {
    try {
      execFileSync('chattr', ['-R', '-i', '-a', dir], { stdio: 'ignore' })
    } catch {
      // not sealed
    }
    rmSync(dir, { recursive: true, force: true })
  })
  return dir
}

/** A fake Paddle, a data folder and `run(...args)` of the CLI pointed at both. */
async function cliWithFake(t: { teardown(fn: () => unknown): void }) {
  const fake = await startFakePaddle()
  t.teardown(() => fake.close())
  const data = tempDir(t)
  const env = {
    ...process.env,
    CLAVITOR_PADDLE_API_URL: fake.url,
    CLAVITOR_PADDLE_API_KEY: 'k',
    CLAVITOR_DATA: data,
  }
  const run = (...args: string[]) => execa(CLI, args, { env, reject: false })
  return { fake, data, env, run }
}

t.test('billing create / show / pending / retry --once', async (t) => {
  const { fake, data, env, run } = await cliWithFake(t)

  const ok = await run(
    'billing',
    'create',
    'customers',
    '--json',
    '{"email":"cli@example.com","name":"CLI"}',
  )
  t.equal(ok.exitCode, 0, ok.stderr)
  const row = JSON.parse(ok.stdout)
  t.match(row, { state: 'synced', level: 1, paddle_id: /^ctm_/, id: /^cus_/ })

  const bad = await run(
    'billing',
    'create',
    'prices',
    '--json',
    '{"product_id":"prd_x","description":"d","unit_amount":"12.50","currency_code":"EUR"}',
  )
  t.equal(bad.exitCode, 2)
  t.match(bad.stderr, /^clavitor: CLA_ERR_INVALID_INPUT: .*unit_amount/)
  t.equal(bad.stderr.trim().split('\n').length, 1, 'one line')
  const badJson = await run('billing', 'create', 'products', '--json', '{nope')
  t.equal(badJson.exitCode, 2)

  fake.failNext({ kind: '5xx', count: Infinity })
  const pend = await run('billing', 'create', 'products', '--json', '{"name":"Vault"}')
  t.equal(pend.exitCode, 0, 'acknowledged even though Paddle is down')
  const p = JSON.parse(pend.stdout)
  t.match(p, {
    state: 'pending',
    attempts: 1,
    paddle_id: null,
    last_error: /CLA_ERR_PADDLE_UNAVAILABLE/,
  })

  const list = await run('billing', 'pending', '--json')
  t.match(JSON.parse(list.stdout), [
    { entity: 'products', id: p.id, state: 'pending', attempts: 1 },
  ])
  const human = await run('billing', 'pending')
  t.match(human.stdout, new RegExp(`pending\\s+products\\s+${p.id}`))

  fake.clearFailures()
  const early = await run('billing', 'retry', '--once', '--json')
  t.match(JSON.parse(early.stdout), { attempted: 0 }, 'younger than 5 minutes: left alone')
  const retried = await run(
    'billing',
    'retry',
    '--once',
    '--json',
    '--retry-after-ms',
    '0',
    '--force',
  )
  t.match(JSON.parse(retried.stdout), { attempted: 1, synced: 1 })
  const shown = await run('billing', 'show', 'products', p.id)
  t.match(JSON.parse(shown.stdout), { state: 'synced', paddle_id: /^pro_/ })
  t.equal(fake.countByCustomId('products', p.id), 1)

  const missing = await run('billing', 'show', 'products', 'prd_nope')
  t.equal(missing.exitCode, 1)
  t.match(missing.stderr, /CLA_ERR_NOT_FOUND/)
})

t.test('billing duplicates: archives an unused twin, exit 1 when a person is needed', async (t) => {
  const { fake, data, env, run } = await cliWithFake(t)
  const atPaddle = async (body: Record<string, unknown>) => {
    const res = await fetch(`${fake.url}/products`, {
      method: 'POST',
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    return ((await res.json()) as { data: { id: string } }).data.id
  }

  const p = JSON.parse(
    (await run('billing', 'create', 'products', '--json', '{"name":"Vault"}')).stdout,
  )
  const twin = await atPaddle({
    name: 'Vault',
    tax_category: 'standard',
    custom_data: { clavitor_id: p.id },
  })
  const dry = await run('billing', 'duplicates', '--dry-run', '--json')
  t.equal(dry.exitCode, 0, dry.stderr)
  t.match(JSON.parse(dry.stdout), {
    archived: 0,
    needs_attention: 0,
    groups: [
      {
        entity: 'products',
        kept: p.paddle_id,
        extras: [{ paddle_id: twin, action: 'would_archive' }],
      },
    ],
  })
  const done = await run('billing', 'duplicates')
  t.equal(done.exitCode, 0, done.stderr)
  t.match(done.stdout, /1 duplicated, 1 archived, 0 need a person/)
  t.match(done.stdout, new RegExp(`archived\\s+products\\s+${p.id} ${twin}`))
  t.equal(fake.state.products.get(twin)?.status, 'archived')

  // twins of a row this core does not have: reported, exit 1
  for (let i = 0; i < 2; i++)
    await atPaddle({
      name: 'x',
      tax_category: 'standard',
      custom_data: { clavitor_id: 'prd_elsewhere' },
    })
  const alarm = await run('billing', 'duplicates', '--json')
  t.equal(alarm.exitCode, 1, 'a person is needed')
  t.match(JSON.parse(alarm.stdout), { needs_attention: 2 })
})

t.test('core serve: webhooks over HTTP, SIGTERM shuts down cleanly', async (t) => {
  const data = tempDir(t)
  // pick a free port for the core first, so the fake can be told where to deliver
  const probe = await startFakePaddle()
  const port = Number(new URL(probe.url).port)
  await probe.close()
  const fake = await startFakePaddle({
    secret: 's3cret',
    webhookUrl: `http://127.0.0.1:${port}/webhooks/paddle`,
  })
  t.teardown(() => fake.close())
  const env = {
    ...process.env,
    CLAVITOR_PADDLE_API_URL: fake.url,
    CLAVITOR_PADDLE_API_KEY: 'k',
    CLAVITOR_PADDLE_WEBHOOK_SECRET: 'old,s3cret',
  }
  const serve = execa(CLI, ['core', 'serve', '--data', data, '--listen', `127.0.0.1:${port}`], {
    env,
    reject: false,
  })
  let out = ''
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`core serve did not start: ${out}`)), 60_000)
    serve.stdout!.on('data', (b: Buffer) => {
      out += b.toString()
      if (out.includes('core listening')) {
        clearTimeout(timer)
        resolve()
      }
    })
    void serve.then((r) => reject(new Error(`core serve exited ${r.exitCode}: ${r.stderr}`)))
  })
  const health = await fetch(`http://127.0.0.1:${port}/healthz`)
  t.equal(health.status, 200)

  const created = await execa(
    CLI,
    ['billing', 'create', 'customers', '--data', data, '--json', '{"email":"hook@example.com"}'],
    { env },
  )
  t.match(JSON.parse(created.stdout), { state: 'synced' })
  await fake.close() // waits for the webhook delivery
  const unsigned = await fetch(`http://127.0.0.1:${port}/webhooks/paddle`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{}',
  })
  t.equal(unsigned.status, 401)

  serve.kill('SIGTERM')
  const res = await serve
  t.equal(res.exitCode, 0, 'clean exit on SIGTERM')
  t.match(res.stdout, /"msg":"paddle webhook"/)
  t.match(
    res.stdout,
    /"outcome":"(applied|linked)"/,
    'the customer.created event was applied (or linked our row, if it beat the answer)',
  )
  t.match(res.stdout, /shutting down/)
})

t.test('billing plan create / update / list / archive, entitlements, vault status', async (t) => {
  const { fake, data, env, run } = await cliWithFake(t)
  const json = async (...args: string[]) => {
    const r = await run(...args)
    t.equal(r.exitCode, 0, `${args.slice(0, 3).join(' ')}: ${r.stderr}`)
    return JSON.parse(r.stdout)
  }
  const product = await json(
    'billing',
    'create',
    'products',
    '--json',
    '{"name":"Vault","tax_category":"saas"}',
  )
  const price = await json(
    'billing',
    'create',
    'prices',
    '--json',
    JSON.stringify({
      product_id: product.id,
      description: 'Team monthly',
      unit_amount: '900',
      currency_code: 'EUR',
      billing_interval: 'month',
    }),
  )
  const plan = await json(
    'billing',
    'plan',
    'create',
    '--name',
    'Team',
    '--price',
    price.id,
    '--max-vaults',
    '1',
    '--max-devices-per-vault',
    'none',
    '--json',
  )
  t.match(plan, { name: 'Team', max_vaults: 1, max_devices_per_vault: null, price_ids: [price.id] })

  const missing = await run(
    'billing',
    'plan',
    'create',
    '--name',
    'X',
    '--price',
    price.id,
    '--max-vaults',
    '1',
  )
  t.equal(missing.exitCode, 2)
  t.match(missing.stderr, /^clavitor: CLA_ERR_INVALID_OPTION: --max-devices-per-vault is required/)
  const badLimit = await run('billing', 'plan', 'update', plan.id, '--max-vaults', 'lots')
  t.equal(badLimit.exitCode, 2)
  t.match(badLimit.stderr, /--max-vaults must be a whole number or "none"/)

  const updated = await run('billing', 'plan', 'update', plan.id, '--max-devices-per-vault', '4')
  t.equal(updated.exitCode, 0, updated.stderr)
  t.match(
    updated.stdout,
    new RegExp(`^${plan.id}  active   Team  vaults/unit=1 devices/vault=4  prices=${price.id}$`),
  )

  const customer = await json(
    'billing',
    'create',
    'customers',
    '--json',
    '{"email":"team@example.com","name":"T"}',
  )
  const address = await json(
    'billing',
    'create',
    'addresses',
    '--json',
    JSON.stringify({ customer_id: customer.id, country_code: 'DE' }),
  )
  const sub = await json(
    'billing',
    'create',
    'subscriptions',
    '--json',
    JSON.stringify({
      customer_id: customer.id,
      address_id: address.id,
      currency_code: 'EUR',
      items: [{ price_id: price.id, quantity: 1 }],
    }),
  )
  t.match(await json('billing', 'entitlements', sub.id), {
    subscription_id: sub.id,
    planned: true,
    max_vaults: 1,
    max_devices_per_vault: 4,
  })
  const v = await json(
    'vault',
    'create',
    '--customer',
    customer.id,
    '--subscription',
    sub.id,
    '--name',
    'one',
    '--json',
  )
  const second = await run(
    'vault',
    'create',
    '--customer',
    customer.id,
    '--subscription',
    sub.id,
    '--name',
    'two',
  )
  t.equal(second.exitCode, 1)
  t.match(
    second.stderr,
    /^clavitor: CLA_ERR_PLAN_VAULT_LIMIT: subscription .* pays for 1 vault\(s\) on plan Team and has 1/,
  )
  const status = await run('vault', 'status', v.id)
  t.equal(status.exitCode, 0, status.stderr)
  t.match(status.stdout, /plan: Team\nvaults: 1 of 1\ndevices: 0 of 4 \(new device allowed\)/)

  // the subscription's life from the CLI: a cancel at the period end, a quantity change
  const cancel = await run('billing', 'subscription', 'cancel', sub.id)
  t.equal(cancel.exitCode, 0, cancel.stderr)
  t.match(cancel.stdout, new RegExp(`^${sub.id}  active  synced  scheduled \\{"action":"cancel"`))
  const changed = await json(
    'billing',
    'subscription',
    'change',
    sub.id,
    '--item',
    `${price.id}:2`,
    '--proration',
    'prorated_immediately',
    '--json',
  )
  t.match(changed, { state: 'synced', items: [{ price_id: price.id, quantity: 2 }] })
  const badItem = await run(
    'billing',
    'subscription',
    'change',
    sub.id,
    '--item',
    'nope',
    '--proration',
    'do_not_bill',
  )
  t.equal(badItem.exitCode, 2)
  t.match(badItem.stderr, /--item must be PRICE_ID:QUANTITY/)

  const archived = await json('billing', 'plan', 'archive', plan.id, '--json')
  t.equal(archived.status, 'archived')
  t.equal((await json('billing', 'plan', 'list', '--archived', '--json')).length, 1)
  t.equal(
    (await json('billing', 'entitlements', sub.id)).max_vaults,
    2,
    'archived: limits kept (quantity 2)',
  )
})

t.test('billing reconcile: a dry run, a pass, one object by id, a bad --entity', async (t) => {
  const { fake, data, env, run } = await cliWithFake(t)
  const atPaddle = async (method: string, path: string, body: unknown) => {
    const res = await fetch(`${fake.url}${path}`, {
      method,
      headers: { authorization: 'Bearer k', 'content-type': 'application/json' },
      body: JSON.stringify(body),
    })
    return ((await res.json()) as { data: { id: string } }).data.id
  }
  // made in Paddle's dashboard only: a customer and its address
  const ctm = await atPaddle('POST', '/customers', { email: 'direct@example.com', name: 'Direct' })
  const add = await atPaddle('POST', `/customers/${ctm}/addresses`, { country_code: 'FR' })

  const dry = await run('billing', 'reconcile', '--dry-run', '--json')
  t.equal(dry.exitCode, 0, dry.stderr)
  t.match(JSON.parse(dry.stdout), { dry_run: true, changes: [['customers', ctm, 'inserted']] })

  const pass = await run('billing', 'reconcile')
  t.equal(pass.exitCode, 0, pass.stderr)
  t.equal(fake.state.events.length, 2, 'customer.created, address.created')
  const evAddress = fake.state.events.at(-1)!.event_id
  t.match(
    pass.stdout,
    new RegExp(
      `^events +seen 2, inserted 2, applied 0, linked 0, unchanged 0, duplicate 0, stored 0, parked 0; after \\(start\\), cursor ${evAddress}$`,
      'm',
    ),
    "the dry run wrote nothing: the pass inserts them from Paddle's event stream",
  )
  t.match(
    pass.stdout,
    /^customers +seen 1, inserted 0, applied 0, linked 0, unchanged 1, parked 0$/m,
    'the lists agree',
  )
  t.match(pass.stdout, new RegExp(`^inserted +customers ${ctm}$`, 'm'))
  t.match(pass.stdout, new RegExp(`^inserted +addresses ${add}$`, 'm'))

  // renamed at Paddle, its webhook lost: re-synced by id
  await atPaddle('PATCH', `/customers/${ctm}`, { name: 'Direct GmbH' })
  const one = await run('billing', 'reconcile', '--id', ctm, '--json')
  t.equal(one.exitCode, 0, one.stderr)
  t.match(JSON.parse(one.stdout), { entity: 'customers', paddle_id: ctm, outcome: 'applied' })

  const db = new Database(join(data, 'meta.db'), { readonly: true })
  t.teardown(() => db.close())
  const mirror = db.prepare('SELECT * FROM customers WHERE paddle_id = ?').get(ctm) as {
    id: string
  }
  t.match(mirror, { level: 0, parent_id: null, name: 'Direct GmbH' }, 'mirrored unplaced')
  t.equal(
    db.prepare('SELECT customer_id FROM addresses WHERE paddle_id = ?').pluck().get(add),
    mirror.id,
  )

  const bad = await run('billing', 'reconcile', '--entity', 'nope')
  t.equal(bad.exitCode, 2)
  t.match(bad.stderr, /^clavitor: CLA_ERR_INVALID_OPTION: --entity nope: one of products/)
})

t.test('billing events [--failed] and events replay', async (t) => {
  const fake = await startFakePaddle() // for its webhook signature only
  t.teardown(() => fake.close())
  const data = tempDir(t)
  const env = { ...process.env, CLAVITOR_DATA: data }
  const run = (...args: string[]) => execa(CLI, args, { env, reject: false })

  // two deliveries taken by our handler on this data folder's database, as `core serve` does
  const db = openDb(join(data, 'meta.db'))
  const billing = new Billing({ db, paddle: null, webhook: { secrets: [fake.secret] } })
  const deliver = (ev: { event_id: string }) => {
    const body = JSON.stringify(ev)
    return handlePaddleWebhook(billing, Buffer.from(body), fake.sign(body)).outcome
  }
  const now = Date.now()
  const created = {
    event_id: 'evt_01customercreated000000000',
    event_type: 'customer.created',
    occurred_at: new Date(now).toISOString(),
    notification_id: 'ntf_1',
    data: { id: 'ctm_01madeatpaddle000000000000', email: 'direct@example.com', status: 'active' },
  }
  const parked = {
    event_id: 'evt_01addressnocustomer000000',
    event_type: 'address.created',
    occurred_at: new Date(now + 1000).toISOString(),
    notification_id: 'ntf_2',
    data: { id: 'add_01madeatpaddle000000000000', country_code: 'DE', status: 'active' },
  }
  t.equal(deliver(created), 'inserted')
  t.equal(deliver(parked), 'parked: customer_unknown')
  // as a build with a bug left it: the customer event failed, nothing of it written
  db.prepare("UPDATE paddle_events SET outcome = 'error: boom' WHERE event_id = ?").run(
    created.event_id,
  )
  db.prepare('DELETE FROM customers').run()
  await billing.stop()
  db.close()

  const failed = await run('billing', 'events', '--failed', '--json')
  t.equal(failed.exitCode, 0, failed.stderr)
  t.same(
    (JSON.parse(failed.stdout) as Array<{ event_id: string; outcome: string }>).map((e) => [
      e.event_id,
      e.outcome,
    ]),
    [
      [parked.event_id, 'parked: customer_unknown'],
      [created.event_id, 'error: boom'],
    ],
    'not applied, newest first',
  )

  const replay = await run('billing', 'events', 'replay', created.event_id)
  t.equal(replay.exitCode, 0, replay.stderr)
  t.equal(replay.stdout, `${created.event_id}  error: boom -> inserted`)
  const again = await run('billing', 'events', 'replay', created.event_id)
  t.equal(again.exitCode, 2, 'an applied event is not replayed')
  t.match(again.stderr, /^clavitor: CLA_ERR_INVALID_INPUT: .*only failed or parked events/)

  const all = await run('billing', 'events')
  t.equal(all.exitCode, 0, all.stderr)
  t.match(
    all.stdout,
    new RegExp(
      `^${parked.event_id}  address.created +\\S+  webhook  parked: customer_unknown\\n${created.event_id}  customer.created +\\S+  webhook  inserted$`,
    ),
  )
})
