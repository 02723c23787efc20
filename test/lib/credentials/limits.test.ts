// Plan limits where vaults and devices are created (lib/credentials/limits.ts), with real
// SQLite and a real store: at the edge (N ok, N+1 refused), a new version of an enrolled
// device never refused, a downgrade keeps what exists and blocks new ones, two new devices
// racing for the last place, and the vault's own status.
import t from 'tap'
import { credFixture, p0Of } from '../../fixtures/credentials.js'
import { createPlan, updatePlan } from '../../../lib/billing/plans.js'
import { ClavitorError } from '../../../lib/errors.js'

async function setup(tt: { teardown(fn: () => unknown): void }) {
  const f = await credFixture((fn) => tt.teardown(fn))
  f.addCustomer('acme')
  f.addSubscription('sub_acme', 'acme', 'active')
  f.addPrice('pri_team')
  f.addItem('sub_acme', 'pri_team', 1)
  const plan = createPlan(f.db, {
    name: 'Team',
    price_ids: ['pri_team'],
    max_vaults: 2,
    max_devices_per_vault: 3,
  })
  return { f, plan }
}

const wl3 = (n: number) => Buffer.from(`wl3 number ${n}`)

t.test('vaults: the plan pays for N, the N+1st is refused and nothing is written', async (t) => {
  const { f } = await setup(t)
  const c = f.credentials
  c.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'one' })
  c.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'two' })
  const before = f.counts()
  const err = (() => {
    try {
      c.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'three' })
    } catch (e) {
      return e as ClavitorError
    }
    return undefined
  })()
  t.equal(err?.code, 'CLA_ERR_PLAN_VAULT_LIMIT')
  t.match(err?.message, /pays for 2 vault\(s\) on plan Team and has 2/)
  t.match(err?.details, { subscription: 'sub_acme', limit: 'max_vaults', max: 2, used: 2 })
  t.same(f.counts(), before, 'no vault row')
  // a vault without a subscription is not counted, and linking it is the same check
  const free = c.createVault({ customerId: 'acme', name: 'unpaid' })
  t.throws(() => c.setVaultSubscription(free.id, 'sub_acme'), { code: 'CLA_ERR_PLAN_VAULT_LIMIT' })
  t.equal(c.getVault(free.id)?.subscription_id, null, 'not linked')
  // quantity 2 of the same plan pays for twice as many
  f.db
    .prepare("UPDATE subscription_items SET quantity = 2 WHERE subscription_id = 'sub_acme'")
    .run()
  t.equal(c.setVaultSubscription(free.id, 'sub_acme').subscription_id, 'sub_acme')
})

t.test('re-linking a vault to its own subscription is not a new vault', async (t) => {
  const { f } = await setup(t)
  const c = f.credentials
  const one = c.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'one' })
  c.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'two' })
  t.equal(c.setVaultSubscription(one.id, 'sub_acme').subscription_id, 'sub_acme')
})

t.test('devices: N new P0s ok, the N+1st refused before writing, versions always ok', async (t) => {
  const { f } = await setup(t)
  const c = f.credentials
  const v = c.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'one' })
  for (let i = 1; i <= 3; i++) await c.registerCredential({ vault: v.id, p0: p0Of(i), wl3: wl3(i) })
  const before = f.counts()
  const err = await c.registerCredential({ vault: v.id, p0: p0Of(4), wl3: wl3(4) }).then(
    () => undefined,
    (e: ClavitorError) => e,
  )
  t.equal(err?.code, 'CLA_ERR_PLAN_DEVICE_LIMIT')
  t.match(err?.message, /enrolled 3 device\(s\); plan Team allows 3 per vault/)
  t.match(err?.details, { vault: v.id, max: 3, used: 3, limit: 'max_devices_per_vault' })
  t.same(f.counts(), before, 'refused before the store: no blob, no file, no row')
  const again = await c.registerCredential({ vault: v.id, p0: p0Of(2), wl3: wl3(22) })
  t.equal(again.version, 2, 'a new version of an enrolled device at the limit')
  // another vault of the same plan has its own device count
  const v2 = c.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'two' })
  t.equal((await c.registerCredential({ vault: v2.id, p0: p0Of(4), wl3: wl3(4) })).version, 1)
  // and a device already registered by the customer is not new in another vault either
  for (const n of [5, 6]) await c.registerCredential({ vault: v2.id, p0: p0Of(n), wl3: wl3(n) })
  t.equal((await c.registerCredential({ vault: v2.id, p0: p0Of(1), wl3: wl3(11) })).version, 2)
})

t.test('a downgrade keeps what exists and blocks new ones; an upgrade frees them', async (t) => {
  const { f, plan } = await setup(t)
  const c = f.credentials
  const v = c.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'one' })
  c.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'two' })
  for (let i = 1; i <= 3; i++) await c.registerCredential({ vault: v.id, p0: p0Of(i), wl3: wl3(i) })
  updatePlan(f.db, plan.id, { max_vaults: 1, max_devices_per_vault: 1 })
  t.equal(c.listVaults({ customerId: 'acme' }).length, 2, 'both vaults kept')
  t.equal((await c.registerCredential({ vault: v.id, p0: p0Of(3), wl3: wl3(33) })).version, 2)
  await t.rejects(c.registerCredential({ vault: v.id, p0: p0Of(9), wl3: wl3(9) }), {
    code: 'CLA_ERR_PLAN_DEVICE_LIMIT',
  })
  t.throws(() => c.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'x' }), {
    code: 'CLA_ERR_PLAN_VAULT_LIMIT',
  })
  t.match(c.vaultStatus(v.id), {
    limits: { max_vaults: 1, max_devices_per_vault: 1 },
    usage: { vaults: 2, devices: 3 },
    can_enrol_device: false,
  })
  updatePlan(f.db, plan.id, { max_devices_per_vault: null })
  t.equal((await c.registerCredential({ vault: v.id, p0: p0Of(9), wl3: wl3(9) })).version, 1)
})

t.test(
  'two new devices racing for the last place: one enrolled, one refused, unpublished',
  async (t) => {
    const { f } = await setup(t)
    const c = f.credentials
    const v = c.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'one' })
    for (let i = 1; i <= 2; i++)
      await c.registerCredential({ vault: v.id, p0: p0Of(i), wl3: wl3(i) })
    const before = f.counts()
    // both pass the early check (2 < 3); the store commits them in one batch, where the
    // second one's transaction sees the first one's row
    const results = await Promise.allSettled([
      c.registerCredential({ vault: v.id, p0: p0Of(7), wl3: wl3(7) }),
      c.registerCredential({ vault: v.id, p0: p0Of(8), wl3: wl3(8) }),
    ])
    const ok = results.filter((r) => r.status === 'fulfilled')
    const refused = results.filter((r) => r.status === 'rejected')
    t.equal(ok.length, 1, 'one enrolled')
    t.equal(refused.length, 1, 'one refused')
    t.equal(
      ((refused[0] as PromiseRejectedResult).reason as ClavitorError).code,
      'CLA_ERR_PLAN_DEVICE_LIMIT',
    )
    const after = f.counts()
    t.equal(after.credentials, before.credentials + 1, 'one credentials row')
    t.equal(after.published, before.published + 1, 'one blob published')
    t.equal(c.vaultStatus(v.id).usage.devices, 3)
  },
)

t.test('vault status: subscription, plan, limits, usage; a vault without one', async (t) => {
  const { f, plan } = await setup(t)
  const c = f.credentials
  f.db
    .prepare(
      `UPDATE subscriptions SET current_period_ends_at = '2027-01-01T00:00:00Z', collection_mode = 'automatic',
         scheduled_change = '{"action":"cancel","effective_at":"2027-01-01T00:00:00Z","resume_at":null}' WHERE id = 'sub_acme'`,
    )
    .run()
  const v = c.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'one' })
  await c.registerCredential({ vault: v.id, p0: p0Of(1), wl3: wl3(1) })
  t.same(c.vaultStatus(v.id), {
    vault: { id: v.id, name: 'one', customer_id: 'acme' },
    subscription: {
      id: 'sub_acme',
      status: 'active',
      collection_mode: 'automatic',
      current_period_starts_at: null,
      current_period_ends_at: '2027-01-01T00:00:00Z',
      next_billed_at: null,
      canceled_at: null,
      paused_at: null,
      scheduled_change: { action: 'cancel', effective_at: '2027-01-01T00:00:00Z', resume_at: null },
    },
    active: true,
    plans: [{ id: plan.id, name: 'Team', quantity: 1 }],
    limits: { max_vaults: 2, max_devices_per_vault: 3 },
    usage: { vaults: 1, devices: 1 },
    can_enrol_device: true,
  })
  f.setSubscriptionStatus('sub_acme', 'paused')
  t.match(c.vaultStatus(v.id), { active: false, can_enrol_device: false })
  const bare = c.createVault({ customerId: 'acme', name: 'bare' })
  t.match(c.vaultStatus(bare.id), {
    subscription: null,
    active: false,
    plans: [],
    limits: { max_vaults: null, max_devices_per_vault: null },
    can_enrol_device: false,
  })
  t.throws(() => c.vaultStatus('vlt_0000000000000000'), { code: 'CLA_ERR_NOT_FOUND' })
})

t.test('an unplanned subscription enforces no limit and says so', async (t) => {
  const f = await credFixture((fn) => t.teardown(fn))
  f.addCustomer('acme')
  f.addSubscription('sub_free', 'acme', 'active')
  const c = f.credentials
  const vaults = [1, 2, 3].map((n) =>
    c.createVault({ customerId: 'acme', subscriptionId: 'sub_free', name: `v${n}` }),
  )
  for (let i = 1; i <= 5; i++)
    await c.registerCredential({ vault: vaults[0]!.id, p0: p0Of(i), wl3: wl3(i) })
  t.match(c.vaultStatus(vaults[0]!.id), {
    plans: [],
    limits: { max_vaults: null, max_devices_per_vault: null },
    usage: { vaults: 3, devices: 5 },
    can_enrol_device: true,
  })
})
