import t from 'tap'
import { join } from 'node:path'
import { openDb, nowMicros, type Db } from '../../../lib/db/open.js'
import {
  ACTIVE_SUBSCRIPTION_STATUSES,
  authenticateVaultKey,
  createApiKey,
  createVault,
  getVault,
  listApiKeys,
  listVaults,
  requireActiveSubscription,
  revokeApiKey,
  setVaultSubscription,
} from '../../../lib/credentials/vaults.js'
import { listEvents } from '../../../lib/audit/log.js'

function fresh(t: { testdir(): string; teardown(fn: () => unknown): void }): Db {
  const db = openDb(join(t.testdir(), 'meta.db'))
  t.teardown(() => db.close())
  const now = nowMicros()
  const cust = db.prepare(
    'INSERT INTO customers (id, parent_id, level, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)',
  )
  cust.run('msp', null, 1, 'msp@x.test', now, now)
  cust.run('acme', 'msp', 2, 'acme@x.test', now, now)
  cust.run('other', null, 1, 'o@x.test', now, now)
  const sub = db.prepare(
    "INSERT INTO subscriptions (id, customer_id, status, currency_code, created_at, updated_at) VALUES (?, ?, ?, 'EUR', ?, ?)",
  )
  sub.run('sub_msp', 'msp', 'active', now, now)
  sub.run('sub_acme', 'acme', 'trialing', now, now)
  sub.run('sub_other', 'other', 'active', now, now)
  sub.run('sub_late', 'acme', 'past_due', now, now)
  return db
}

const count = (db: Db, table: string) =>
  (db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n

t.test('createVault: customer and subscription checks; audited', async (t) => {
  const db = fresh(t)
  const v = createVault(db, {
    customerId: 'acme',
    subscriptionId: 'sub_acme',
    name: 'Acme laptops',
    actor: 'h1',
  })
  t.match(v.id, /^vlt_[0-9a-f]{16}$/)
  t.same(getVault(db, v.id), v)
  const parentPays = createVault(db, {
    customerId: 'acme',
    subscriptionId: 'sub_msp',
    name: 'paid by MSP',
  })
  t.equal(parentPays.subscription_id, 'sub_msp', "a parent's subscription may pay")
  t.equal(createVault(db, { customerId: 'acme', name: 'no sub' }).subscription_id, null)
  const before = count(db, 'vaults')
  t.throws(() => createVault(db, { customerId: 'nobody', name: 'x' }), {
    code: 'CLA_ERR_NOT_FOUND',
  })
  t.throws(() => createVault(db, { customerId: 'acme', subscriptionId: 'sub_nope', name: 'x' }), {
    code: 'CLA_ERR_NOT_FOUND',
  })
  t.throws(() => createVault(db, { customerId: 'acme', subscriptionId: 'sub_other', name: 'x' }), {
    code: 'CLA_ERR_INVALID_INPUT',
  })
  t.throws(
    () => createVault(db, { customerId: 'msp', subscriptionId: 'sub_acme', name: 'x' }),
    {
      code: 'CLA_ERR_INVALID_INPUT',
    },
    "a child's subscription cannot pay for the parent",
  )
  t.throws(() => createVault(db, { customerId: 'acme', name: '  ' }), {
    code: 'CLA_ERR_INVALID_INPUT',
  })
  t.throws(() => createVault(db, { customerId: 'acme', name: 'x', id: 'bad' }), {
    code: 'CLA_ERR_INVALID_INPUT',
  })
  t.throws(() => createVault(db, { customerId: 'acme', name: 'x', id: v.id }), {
    code: 'CLA_ERR_EXISTS',
  })
  t.equal(count(db, 'vaults'), before, 'refused creations changed nothing')
  const ev = listEvents(db, { kind: 'vault.create', order: 'asc' })
  t.equal(ev.length, 3)
  t.equal(ev[0]!.actor, 'h1')
})

t.test('API keys: shown once, stored hashed, authenticate, revoke', async (t) => {
  const db = fresh(t)
  const v = createVault(db, { customerId: 'acme', subscriptionId: 'sub_acme', name: 'v' })
  const k = createApiKey(db, v.id)
  t.match(k.key, /^clv_[0-9a-f]{16}_[0-9a-f]{64}$/)
  const stored = db.prepare('SELECT * FROM vault_api_keys WHERE id = ?').get(k.id) as {
    hash: string
  }
  t.notOk(k.key.includes(stored.hash))
  t.notOk(JSON.stringify(stored).includes(k.key.slice(-64)), 'the secret is not stored')
  t.same(authenticateVaultKey(db, k.key), { keyId: k.id, vaultId: v.id, customerId: 'acme' })

  const wrongSecret = k.key.slice(0, -4) + (k.key.endsWith('0000') ? '1111' : '0000')
  t.throws(() => authenticateVaultKey(db, wrongSecret), { code: 'CLA_ERR_API_KEY_INVALID' })
  t.throws(() => authenticateVaultKey(db, `clv_${'0'.repeat(16)}_${'0'.repeat(64)}`), {
    code: 'CLA_ERR_API_KEY_INVALID',
  })
  t.throws(() => authenticateVaultKey(db, 'nonsense'), { code: 'CLA_ERR_API_KEY_INVALID' })
  t.throws(() => createApiKey(db, 'vlt_0000000000000000'), { code: 'CLA_ERR_NOT_FOUND' })

  const k2 = createApiKey(db, v.id)
  const r = revokeApiKey(db, k.id, { actor: 'h2' })
  t.ok(r.revoked_at)
  t.equal(revokeApiKey(db, k.id).revoked_at, r.revoked_at, 'revoking again keeps the first time')
  t.throws(() => authenticateVaultKey(db, k.key), { code: 'CLA_ERR_API_KEY_REVOKED' })
  t.throws(
    () => authenticateVaultKey(db, wrongSecret),
    { code: 'CLA_ERR_API_KEY_INVALID' },
    'revocation is not told without the secret',
  )
  t.equal(authenticateVaultKey(db, k2.key).keyId, k2.id, 'other keys of the vault still work')
  t.throws(() => revokeApiKey(db, 'ffffffffffffffff'), { code: 'CLA_ERR_NOT_FOUND' })
  const listed = new Map(listApiKeys(db, v.id).map((x) => [x.id, x.revoked_at !== null]))
  t.same(Object.fromEntries(listed), { [k.id]: true, [k2.id]: false })
  t.equal(listEvents(db, { kind: 'vault.key.create' }).length, 2)
  t.equal(listEvents(db, { kind: 'vault.key.revoke' }).length, 1)
})

t.test('subscription status: active and trialing count, the rest do not', async (t) => {
  const db = fresh(t)
  t.same(ACTIVE_SUBSCRIPTION_STATUSES, ['active', 'trialing'])
  const v = createVault(db, { customerId: 'acme', subscriptionId: 'sub_acme', name: 'v' })
  t.doesNotThrow(() => requireActiveSubscription(db, v), 'trialing')
  for (const status of ['past_due', 'paused', 'canceled', 'something_new']) {
    db.prepare('UPDATE subscriptions SET status = ? WHERE id = ?').run(status, 'sub_acme')
    t.throws(
      () => requireActiveSubscription(db, getVault(db, v.id)!),
      { code: 'CLA_ERR_SUBSCRIPTION_INACTIVE' },
      status,
    )
  }
  const none = createVault(db, { customerId: 'acme', name: 'none' })
  t.throws(() => requireActiveSubscription(db, none), { code: 'CLA_ERR_SUBSCRIPTION_INACTIVE' })
  const linked = setVaultSubscription(db, none.id, 'sub_msp')
  t.doesNotThrow(() => requireActiveSubscription(db, linked))
  t.throws(() => setVaultSubscription(db, none.id, 'sub_other'), { code: 'CLA_ERR_INVALID_INPUT' })
})

t.test('listVaults: per customer, with counts, paged by id', async (t) => {
  const db = fresh(t)
  const a = createVault(db, { customerId: 'acme', subscriptionId: 'sub_late', name: 'a' })
  createVault(db, { customerId: 'other', name: 'b' })
  createApiKey(db, a.id)
  const rows = listVaults(db, { customerId: 'acme' })
  t.equal(rows.length, 1)
  t.match(rows[0], { id: a.id, credentials: 0, active_keys: 1, subscription_status: 'past_due' })
  t.equal(listVaults(db).length, 2)
  const first = listVaults(db, { limit: 1 })
  t.equal(first.length, 1)
  t.equal(listVaults(db, { after: first[0]!.id }).length, 1)
})
