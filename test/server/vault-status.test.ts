// GET /api/v1/vault/status and the plan limits over HTTP, through the core's real app
// (buildCoreApp over openCore: real SQLite, real store, Fastify inject).
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openCore } from '../../lib/core.js'
import { nowMicros } from '../../lib/db/open.js'
import { buildCoreApp } from '../../server/app.js'
import { clearFlags, p0Of } from '../fixtures/credentials.js'

async function setup(tt: { teardown(fn: () => unknown): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'clavitor-vaultstatus-'))
  const core = await openCore({ dataDir: dir, protection: 'best-effort' })
  const app = await buildCoreApp({ core, admin: { onSetupUrl: () => {} } })
  tt.teardown(async () => {
    await app.close()
    await core.close()
    clearFlags(dir)
    rmSync(dir, { recursive: true, force: true })
  })
  const now = nowMicros()
  const db = core.db
  db.prepare(
    "INSERT INTO customers (id, parent_id, level, email, created_at, updated_at) VALUES ('acme', NULL, 1, 'a@x.test', ?, ?)",
  ).run(now, now)
  db.prepare(
    "INSERT INTO subscriptions (id, customer_id, status, currency_code, current_period_ends_at, created_at, updated_at) VALUES ('sub_acme', 'acme', 'active', 'EUR', '2027-02-01T00:00:00Z', ?, ?)",
  ).run(now, now)
  db.prepare(
    "INSERT INTO products (id, name, created_at, updated_at) VALUES ('prd_v', 'Vault', ?, ?)",
  ).run(now, now)
  db.prepare(
    "INSERT INTO prices (id, product_id, unit_amount, currency_code, billing_interval, billing_frequency, created_at, updated_at) VALUES ('pri_solo', 'prd_v', '500', 'EUR', 'month', 1, ?, ?)",
  ).run(now, now)
  db.prepare(
    "INSERT INTO subscription_items (subscription_id, price_id, quantity) VALUES ('sub_acme', 'pri_solo', 1)",
  ).run()
  const plan = core.billing.createPlan({
    name: 'Solo',
    price_ids: ['pri_solo'],
    max_vaults: 1,
    max_devices_per_vault: 2,
  })
  const vault = core.credentials.createVault({
    customerId: 'acme',
    subscriptionId: 'sub_acme',
    name: 'home',
  })
  const key = core.credentials.createApiKey(vault.id).key
  return { core, app, plan, vault, key }
}

t.test('a vault reads its subscription, plan, limits and usage with its own key', async (t) => {
  const { app, plan, vault, key } = await setup(t)
  const auth = { authorization: `Bearer ${key}` }
  const register = (n: number, wl3 = `wl3 ${n}`) =>
    app.inject({
      method: 'POST',
      url: '/api/v1/credentials/register',
      headers: auth,
      payload: { p0: p0Of(n), wl3: Buffer.from(wl3).toString('base64') },
    })
  t.equal((await register(1)).statusCode, 201)
  t.equal((await register(2)).statusCode, 201)
  const refused = await register(3)
  t.equal(refused.statusCode, 402)
  t.match(refused.json().error, {
    code: 'CLA_ERR_PLAN_DEVICE_LIMIT',
    message: /plan Solo allows 2 per vault/,
  })
  t.equal((await register(2, 'a new version')).statusCode, 201, 'versions are never limited')

  const res = await app.inject({ method: 'GET', url: '/api/v1/vault/status', headers: auth })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'private, no-store')
  t.same(res.json(), {
    vault: { id: vault.id, name: 'home', customer_id: 'acme' },
    subscription: {
      id: 'sub_acme',
      status: 'active',
      collection_mode: 'manual',
      current_period_starts_at: null,
      current_period_ends_at: '2027-02-01T00:00:00Z',
      next_billed_at: null,
      canceled_at: null,
      paused_at: null,
      scheduled_change: null,
    },
    active: true,
    plans: [{ id: plan.id, name: 'Solo', quantity: 1 }],
    limits: { max_vaults: 1, max_devices_per_vault: 2 },
    usage: { vaults: 1, devices: 2 },
    can_enrol_device: false,
  })
})

t.test('without a valid key the status is refused like every credentials route', async (t) => {
  const { app } = await setup(t)
  const none = await app.inject({ method: 'GET', url: '/api/v1/vault/status' })
  t.equal(none.statusCode, 401)
  t.equal(none.json().error.code, 'CLA_ERR_API_KEY_MISSING')
  const bad = await app.inject({
    method: 'GET',
    url: '/api/v1/vault/status',
    headers: { authorization: 'Bearer clv_0000000000000000_nope' },
  })
  t.equal(bad.statusCode, 401)
})
