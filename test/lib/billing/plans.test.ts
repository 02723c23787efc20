// Plans (lib/billing/plans.ts) and what a subscription's items entitle it to
// (lib/billing/entitlements.ts), on a real SQLite file.
import t from 'tap'
import { credFixture } from '../../fixtures/credentials.js'
import { createPlan, getPlan, listPlans, updatePlan } from '../../../lib/billing/plans.js'
import { entitlementsOf, planLabel } from '../../../lib/billing/entitlements.js'
import { listEvents } from '../../../lib/audit/log.js'

async function setup(tt: { teardown(fn: () => unknown): void }) {
  const f = await credFixture((fn) => tt.teardown(fn))
  f.addCustomer('acme')
  f.addSubscription('sub_acme', 'acme', 'active')
  for (const p of ['pri_team', 'pri_team_year', 'pri_pro', 'pri_free']) f.addPrice(p)
  f.addPrice('pri_setup', { oneTime: true })
  f.addPrice('pri_paddle_known', { paddleId: 'pri_01paddle' })
  return f
}

t.test('create validates, links prices, audits; list and get read it back', async (t) => {
  const f = await setup(t)
  const plan = createPlan(
    f.db,
    {
      name: 'Team',
      price_ids: ['pri_team_year', 'pri_team'],
      max_vaults: 5,
      max_devices_per_vault: 10,
    },
    { actor: 'hum_1' },
  )
  t.match(plan, {
    id: /^pln_[0-9a-z]{26}$/,
    name: 'Team',
    status: 'active',
    max_vaults: 5,
    max_devices_per_vault: 10,
    price_ids: ['pri_team', 'pri_team_year'],
    description: null,
  })
  t.same(getPlan(f.db, plan.id), plan)
  t.same(listPlans(f.db), [plan])
  const ev = listEvents(f.db, { kind: 'plan.create' })
  t.equal(ev.length, 1)
  t.match(ev[0], { actor: 'hum_1', outcome: 'ok' })
  t.match(JSON.parse(String(ev[0]!.data)), { plan: plan.id, max_vaults: 5, prices: plan.price_ids })
  // a Paddle price id of a price we mirror names our price
  const viaPaddle = createPlan(f.db, {
    name: 'Pro',
    price_ids: ['pri_01paddle'],
    max_vaults: null,
    max_devices_per_vault: 50,
  })
  t.same(viaPaddle.price_ids, ['pri_paddle_known'])
})

t.test('bad plans are refused with a code that says what to fix, and write nothing', async (t) => {
  const f = await setup(t)
  createPlan(f.db, {
    name: 'Team',
    price_ids: ['pri_team'],
    max_vaults: 1,
    max_devices_per_vault: 1,
  })
  const cases: Array<[string, unknown, string, RegExp]> = [
    [
      'no name',
      { price_ids: ['pri_pro'], max_vaults: 1, max_devices_per_vault: 1 },
      'CLA_ERR_INVALID_INPUT',
      /name/,
    ],
    [
      'blank name',
      { name: '  ', price_ids: ['pri_pro'], max_vaults: 1, max_devices_per_vault: 1 },
      'CLA_ERR_INVALID_INPUT',
      /not only spaces/,
    ],
    [
      'negative limit',
      { name: 'X', price_ids: ['pri_pro'], max_vaults: -1, max_devices_per_vault: 1 },
      'CLA_ERR_INVALID_INPUT',
      /whole number/,
    ],
    [
      'fraction',
      { name: 'X', price_ids: ['pri_pro'], max_vaults: 1.5, max_devices_per_vault: 1 },
      'CLA_ERR_INVALID_INPUT',
      /whole number/,
    ],
    [
      'limit missing',
      { name: 'X', price_ids: ['pri_pro'], max_vaults: 1 },
      'CLA_ERR_INVALID_INPUT',
      /max_devices_per_vault/,
    ],
    [
      'no prices',
      { name: 'X', price_ids: [], max_vaults: 1, max_devices_per_vault: 1 },
      'CLA_ERR_INVALID_INPUT',
      /price_ids/,
    ],
    [
      'unknown field',
      { name: 'X', price_ids: ['pri_pro'], max_vaults: 1, max_devices_per_vault: 1, seats: 3 },
      'CLA_ERR_INVALID_INPUT',
      /plan create/,
    ],
    [
      'unknown price',
      { name: 'X', price_ids: ['pri_nope'], max_vaults: 1, max_devices_per_vault: 1 },
      'CLA_ERR_NOT_FOUND',
      /price pri_nope does not exist/,
    ],
    [
      'one-time price',
      { name: 'X', price_ids: ['pri_setup'], max_vaults: 1, max_devices_per_vault: 1 },
      'CLA_ERR_INVALID_INPUT',
      /one-time/,
    ],
    [
      'price of another plan',
      { name: 'X', price_ids: ['pri_pro', 'pri_team'], max_vaults: 1, max_devices_per_vault: 1 },
      'CLA_ERR_BILLING_CONFLICT',
      /already sells plan "Team"/,
    ],
    [
      'same name',
      { name: 'Team', price_ids: ['pri_pro'], max_vaults: 1, max_devices_per_vault: 1 },
      'CLA_ERR_BILLING_CONFLICT',
      /named "Team"/,
    ],
  ]
  for (const [name, input, code, message] of cases) {
    t.throws(() => createPlan(f.db, input), { code, message }, name)
  }
  t.equal(listPlans(f.db, { archived: true }).length, 1, 'only the first plan exists')
  t.equal(listEvents(f.db, { kind: 'plan.create' }).length, 1)
  t.throws(() => updatePlan(f.db, 'pln_missing', { max_vaults: 1 }), { code: 'CLA_ERR_NOT_FOUND' })
  t.throws(() => updatePlan(f.db, listPlans(f.db)[0]!.id, {}), { code: 'CLA_ERR_INVALID_INPUT' })
})

t.test(
  'update: limits, prices (not away from a subscription), archive keeps entitlements',
  async (t) => {
    const f = await setup(t)
    const plan = createPlan(f.db, {
      name: 'Team',
      price_ids: ['pri_team', 'pri_team_year'],
      max_vaults: 2,
      max_devices_per_vault: 3,
    })
    f.addItem('sub_acme', 'pri_team', 1)
    const raised = updatePlan(
      f.db,
      plan.id,
      { max_vaults: 4, description: 'more room' },
      { actor: 'cli' },
    )
    t.match(raised, { max_vaults: 4, description: 'more room', max_devices_per_vault: 3 })
    t.ok(raised.updated_at >= plan.updated_at)
    t.match(JSON.parse(String(listEvents(f.db, { kind: 'plan.update' })[0]!.data)), {
      changed: ['description', 'max_vaults'],
    })
    t.throws(() => updatePlan(f.db, plan.id, { price_ids: ['pri_team_year'] }), {
      code: 'CLA_ERR_BILLING_CONFLICT',
      message: /pri_team is on 1 subscription/,
    })
    t.same(updatePlan(f.db, plan.id, { price_ids: ['pri_team', 'pri_pro'] }).price_ids, [
      'pri_pro',
      'pri_team',
    ])
    const archived = updatePlan(f.db, plan.id, { status: 'archived' })
    t.equal(archived.status, 'archived')
    t.same(listPlans(f.db), [], 'archived plans are hidden')
    t.equal(listPlans(f.db, { archived: true }).length, 1)
    t.equal(entitlementsOf(f.db, 'sub_acme')?.max_vaults, 4, 'a customer keeps what they bought')
    t.throws(() => updatePlan(f.db, plan.id, { price_ids: ['pri_team', 'pri_free'] }), {
      code: 'CLA_ERR_INVALID_INPUT',
      message: /archived/,
    })
    // a new plan may take the archived one's name; reactivating the old one then conflicts
    createPlan(f.db, {
      name: 'Team',
      price_ids: ['pri_free'],
      max_vaults: 1,
      max_devices_per_vault: 1,
    })
    t.throws(() => updatePlan(f.db, plan.id, { status: 'active' }), {
      code: 'CLA_ERR_BILLING_CONFLICT',
    })
  },
)

t.test(
  'entitlements: quantities add vaults, the largest device limit, null means none',
  async (t) => {
    const f = await setup(t)
    t.equal(entitlementsOf(f.db, 'sub_missing'), undefined)
    t.same(entitlementsOf(f.db, 'sub_acme'), {
      subscription_id: 'sub_acme',
      planned: false,
      plans: [],
      max_vaults: null,
      max_devices_per_vault: null,
    })
    const team = createPlan(f.db, {
      name: 'Team',
      price_ids: ['pri_team', 'pri_team_year'],
      max_vaults: 2,
      max_devices_per_vault: 5,
    })
    const pro = createPlan(f.db, {
      name: 'Pro',
      price_ids: ['pri_pro'],
      max_vaults: 1,
      max_devices_per_vault: 20,
    })
    f.addItem('sub_acme', 'pri_team', 3)
    let e = entitlementsOf(f.db, 'sub_acme')!
    t.match(e, { planned: true, max_vaults: 6, max_devices_per_vault: 5 })
    t.equal(planLabel(e), 'Team ×3')
    f.addItem('sub_acme', 'pri_pro', 1)
    f.addItem('sub_acme', 'pri_free', 4) // a price that sells no plan adds nothing
    e = entitlementsOf(f.db, 'sub_acme')!
    t.same(e.plans, [
      { id: pro.id, name: 'Pro', quantity: 1 },
      { id: team.id, name: 'Team', quantity: 3 },
    ])
    t.match(e, { max_vaults: 7, max_devices_per_vault: 20 })
    t.equal(planLabel(e), 'Pro, Team ×3')
    // an item Paddle removed (inactive) counts no more
    f.db
      .prepare("UPDATE subscription_items SET status = 'inactive' WHERE price_id = 'pri_pro'")
      .run()
    t.match(entitlementsOf(f.db, 'sub_acme'), { max_vaults: 6, max_devices_per_vault: 5 })
    // two prices of one plan add up as one plan
    f.addItem('sub_acme', 'pri_team_year', 1)
    t.match(entitlementsOf(f.db, 'sub_acme'), {
      plans: [{ name: 'Team', quantity: 4 }],
      max_vaults: 8,
    })
    // one unlimited plan lifts the limit
    updatePlan(f.db, pro.id, { max_vaults: null })
    f.db
      .prepare("UPDATE subscription_items SET status = 'trialing' WHERE price_id = 'pri_pro'")
      .run()
    t.match(entitlementsOf(f.db, 'sub_acme'), { max_vaults: null, max_devices_per_vault: 20 })
    // an item named by Paddle's price id (a snapshot before the price was linked) counts
    f.addSubscription('sub_paddle', 'acme', 'active')
    createPlan(f.db, {
      name: 'Known',
      price_ids: ['pri_paddle_known'],
      max_vaults: 9,
      max_devices_per_vault: 9,
    })
    f.addItem('sub_paddle', 'pri_01paddle', 1)
    t.match(entitlementsOf(f.db, 'sub_paddle'), { planned: true, max_vaults: 9 })
  },
)
