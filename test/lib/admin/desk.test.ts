// desk.ts and scope.ts: what a scoped admin sees and changes. Two MSPs side by side; an
// admin of MSP A (and one of A's customer) against every read, list, count and action of
// the desk, and the invites and admin changes that must never grant more than is held.
import { mkdtempSync, rmSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { AdminDesk } from '../../../lib/admin/desk.js'
import { listEvents } from '../../../lib/audit/log.js'
import { openCore, type Core } from '../../../lib/core.js'
import { seedAdmin } from '../../fixtures/admin.js'
import { IDS, seedTwoMsps } from '../../fixtures/scoped.js'
import { SoftAuthenticator } from '../../fixtures/soft-authenticator.js'
import { facts } from './fixtures/unit.js'

process.env.CLAVITOR_PROTECTION = 'off'

async function setup(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'clavitor-desk-'))
  const core: Core = await openCore({ dataDir: dir })
  t.teardown(async () => {
    await core.close()
    spawnSync('chattr', ['-R', '-i', '-a', dir])
    rmSync(dir, { recursive: true, force: true })
  })
  const seeded = seedTwoMsps(core)
  const actor = (role: 'owner' | 'operator' | 'viewer', scope: string | null) => {
    const { humanId } = seedAdmin(core.db, role, undefined, scope)
    return { humanId, name: humanId, role, scope }
  }
  const deskOf = (a: ReturnType<typeof actor>) => new AdminDesk(core, a, facts)
  return { core, seeded, actor, deskOf }
}

const ids = (rows: Array<Record<string, unknown>>) => rows.map((r) => r.id).sort()
const page = { limit: 50, offset: 0 }
const scopeRefusals = (core: Core, humanId: string) =>
  listEvents(core.db, { actor: humanId, outcome: 'refused' }).filter(
    (e) => e.reason === 'CLA_ERR_ADMIN_SCOPE',
  ).length

t.test('lists and counts: an MSP admin sees its subtree only; the owner sees all', async (t) => {
  const { seeded: s, actor, deskOf } = await setup(t)
  const owner = deskOf(actor('owner', null))
  const a = deskOf(actor('viewer', IDS.mspA))

  t.same(ids(owner.subscriptions(page).rows), [s.subA1, s.subB1].sort())
  t.same(ids(a.subscriptions(page).rows), [s.subA1])
  t.same(ids(a.transactions(page).rows), [s.txnA1])
  t.same(ids(a.vaults(page).rows), [s.vaultA1])
  t.same(ids(a.discounts(page).rows), ['dsc_a'])
  t.same(ids(owner.discounts(page).rows), ['dsc_a', 'dsc_b'])

  const tree = a.customerTree()
  t.equal(tree.length, 1)
  t.equal(tree[0]!.id, IDS.mspA, 'the tree is rooted at the MSP')
  t.same(
    tree[0]!.children.map((c) => c.id),
    [IDS.a1],
  )
  t.equal(owner.customerTree().length, 2)

  const dash = a.dashboard()
  t.match(dash.facts, {
    customers: { msp: 1, customer: 1, department: 1 },
    subscriptions: { total: 1, active: 1 },
    vaults: 1,
    blobs: null,
    pops: null,
    events: null,
  })
  t.equal(dash.installation, null, 'no revenue, POPs or pending writes of the installation')
  const all = owner.dashboard()
  t.match(all.facts, { customers: { msp: 2, customer: 2 }, subscriptions: { total: 2 }, vaults: 2 })
  t.ok(all.installation, 'the owner sees the installation')

  // a customer's admin: the customer and its department, not its MSP
  const c = deskOf(actor('operator', IDS.a1))
  t.same(c.customerTree()[0]!.id, IDS.a1)
  t.match(c.dashboard().facts, { customers: { msp: 0, customer: 1, department: 1 } })
  t.same(
    c.customer(IDS.a1).ancestors.map((r) => r.id),
    [],
    "the MSP above is not shown to the customer's admin",
  )
  t.same(
    a.customer(IDS.a1d).ancestors.map((r) => r.id),
    [IDS.mspA, IDS.a1],
  )
})

t.test('reads of one object outside the scope: refused and audited', async (t) => {
  const { core, seeded: s, actor, deskOf } = await setup(t)
  const who = actor('owner', IDS.mspA)
  const a = deskOf(who)
  const refusals: Array<[string, () => unknown]> = [
    ['customer of MSP B', () => a.customer(IDS.b1)],
    ['MSP B itself', () => a.customer(IDS.mspB)],
    ['subscription of MSP B', () => a.subscription(s.subB1)],
    ['vault of MSP B', () => a.vaultWithKeys(s.vaultB1)],
    ['POPs', () => a.pops()],
    ['audit log', () => a.events({ limit: 10 })],
  ]
  for (const [what, read] of refusals)
    t.throws(read, { code: 'CLA_ERR_ADMIN_SCOPE' }, `${what}: refused`)
  t.equal(scopeRefusals(core, who.humanId), refusals.length, 'each refusal is in the audit log')
  // within the scope they answer
  t.equal(a.customer(IDS.a1).customer.id, IDS.a1)
  t.equal(a.subscription(s.subA1).subscription.id, s.subA1)
  t.equal(a.vaultWithKeys(s.vaultA1).keys.length, 1)
})

t.test('changes outside the scope: refused, audited, nothing written', async (t) => {
  const { core, seeded: s, actor, deskOf } = await setup(t)
  const who = actor('owner', IDS.mspA)
  const a = deskOf(who)
  const count = (table: string) =>
    core.db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number
  const before = ['customers', 'vaults', 'vault_api_keys', 'discounts', 'subscriptions'].map(count)
  await t.rejects(
    a.createCustomer({ parentId: IDS.mspB, name: 'Intruder', email: 'x@example.com' }),
    { code: 'CLA_ERR_ADMIN_SCOPE' },
  )
  await t.rejects(a.createCustomer({ parentId: null, name: 'New MSP', email: 'y@example.com' }), {
    code: 'CLA_ERR_ADMIN_SCOPE',
  })
  await t.rejects(
    a.createMargin({ mspId: IDS.mspA, description: 'more margin', percentage: '50' }),
    { code: 'CLA_ERR_ADMIN_SCOPE' },
    'an MSP does not set its own margin',
  )
  await t.rejects(a.createSubscription({ customer_id: IDS.b1 }), { code: 'CLA_ERR_ADMIN_SCOPE' })
  await t.rejects(a.changeSubscription(s.subB1, { action: 'resume' }), {
    code: 'CLA_ERR_ADMIN_SCOPE',
  })
  await t.rejects(a.retrySubscription(s.subB1), { code: 'CLA_ERR_ADMIN_SCOPE' })
  t.throws(() => a.createVault({ customerId: IDS.b1, name: 'x' }), { code: 'CLA_ERR_ADMIN_SCOPE' })
  t.throws(() => a.issueVaultKey(s.vaultB1), { code: 'CLA_ERR_ADMIN_SCOPE' })
  t.throws(() => a.revokeVaultKey(s.keyB1), { code: 'CLA_ERR_ADMIN_SCOPE' })
  t.same(
    ['customers', 'vaults', 'vault_api_keys', 'discounts', 'subscriptions'].map(count),
    before,
    'nothing written',
  )
  t.equal(core.credentials.getApiKey(s.keyB1)!.revoked_at, null, "B's key still works")
  t.equal(scopeRefusals(core, who.humanId), 9)
})

t.test('changes within the scope go through, with the role still checked', async (t) => {
  const { core, seeded: s, actor, deskOf } = await setup(t)
  const op = deskOf(actor('operator', IDS.mspA))
  const v = op.createVault({ customerId: IDS.a1, name: 'Second' })
  t.equal(v.customer_id, IDS.a1)
  const k = op.issueVaultKey(v.id)
  t.match(k.key, /^clv_/, 'the key is shown once')
  t.equal(core.credentials.authenticateVaultKey(k.key).vaultId, v.id, 'and works')
  t.ok(op.revokeVaultKey(s.keyA1).revoked_at, 'a key of its customer revoked')
  const dept = await op.createCustomer({ parentId: IDS.a1, name: 'Ops', email: 'ops@example.com' })
  t.equal(dept.parent_id, IDS.a1)

  const viewer = deskOf(actor('viewer', IDS.mspA))
  t.throws(() => viewer.createVault({ customerId: IDS.a1, name: 'x' }), {
    code: 'CLA_ERR_ADMIN_FORBIDDEN',
  })
  t.throws(() => viewer.issueVaultKey(s.vaultA1), { code: 'CLA_ERR_ADMIN_FORBIDDEN' })
})

t.test('invites carry the scope and never grant more than is held', async (t) => {
  const { core, actor, deskOf } = await setup(t)
  const owner = deskOf(actor('owner', null))
  const aOwner = deskOf(actor('owner', IDS.mspA))

  t.equal(owner.invite('owner').scope, null, "the installation owner's default: everything")
  t.equal(owner.invite('owner', IDS.mspB).scope, IDS.mspB)
  t.equal(aOwner.invite('operator').scope, IDS.mspA, "default: the inviter's own scope")
  t.equal(aOwner.invite('viewer', IDS.a1).scope, IDS.a1, 'a narrower scope')
  t.throws(() => aOwner.invite('viewer', IDS.mspB), { code: 'CLA_ERR_ADMIN_SCOPE' })
  t.throws(() => aOwner.invite('viewer', IDS.b1), { code: 'CLA_ERR_ADMIN_SCOPE' })
  t.throws(
    () => aOwner.invite('viewer', null),
    { code: 'CLA_ERR_ADMIN_SCOPE' },
    'not the installation',
  )
  t.throws(() => aOwner.invite('viewer', 'ctm_nope'), { code: 'CLA_ERR_INVALID_INPUT' })
  t.throws(() => deskOf(actor('operator', IDS.mspA)).invite('viewer'), {
    code: 'CLA_ERR_ADMIN_FORBIDDEN',
  })

  // the enrolled admin holds the invite's scope
  const inv = aOwner.invite('operator', IDS.a1)
  t.match(core.admin.checkToken(inv.token), { role: 'operator', scope: IDS.a1 })
  const key = new SoftAuthenticator()
  const reg = await core.admin.startEnrollment({ token: inv.token, name: 'Cleo' }, facts)
  const s = await core.admin.finishEnrollment(
    { ceremonyId: reg.ceremonyId, response: key.register(reg.options, facts.origin) },
    facts,
  )
  t.match(s.human, { role: 'operator', scope: IDS.a1 })
  t.match(core.admin.session(s.token), { role: 'operator', scope: IDS.a1 })
  t.match(core.admin.findByName('Cleo'), { scope: IDS.a1, scope_name: 'Alpha One' })
})

t.test('admins: a scoped owner lists and changes only the admins within its scope', async (t) => {
  const { core, actor, deskOf } = await setup(t)
  const boss = actor('owner', null)
  const aOwner = actor('owner', IDS.mspA)
  const aViewer = actor('viewer', IDS.a1)
  const bViewer = actor('viewer', IDS.mspB)
  const a = deskOf(aOwner)
  t.same(
    a
      .admins()
      .map((r) => r.id)
      .sort(),
    [aOwner.humanId, aViewer.humanId].sort(),
    "B's and the installation's admins are not listed",
  )
  t.equal(deskOf(boss).admins().length, 4)
  t.throws(() => a.disableAdmin(bViewer.humanId), { code: 'CLA_ERR_ADMIN_SCOPE' })
  t.throws(() => a.disableAdmin(boss.humanId), { code: 'CLA_ERR_ADMIN_SCOPE' })
  t.throws(() => a.setAdminRole(bViewer.humanId, 'operator'), { code: 'CLA_ERR_ADMIN_SCOPE' })
  t.match(a.setAdminRole(aViewer.humanId, 'operator'), { from: 'viewer', to: 'operator' })
  t.equal(
    a.admins().find((r) => r.id === aViewer.humanId)!.scope,
    IDS.a1,
    'a role change keeps the scope',
  )
  a.disableAdmin(aViewer.humanId)
  t.ok(a.admins().find((r) => r.id === aViewer.humanId)!.disabled_at)
  // the last installation owner is protected; a scoped owner does not count as one
  const other = actor('owner', null)
  deskOf(other).disableAdmin(boss.humanId)
  t.throws(
    () => core.admin.setRole('system', other.humanId, 'viewer'),
    { code: 'CLA_ERR_INVALID_INPUT', message: /last owner/ },
    "MSP A's owner does not keep the installation administrable",
  )
})
