// humans.ts through the Admin facade: listing admins, role changes and disabling, with
// the rules that keep an owner in charge.
import t from 'tap'
import { nowMicros } from '../../../lib/db/open.js'
import { listEvents, verifyChain } from '../../../lib/audit/log.js'
import { seedAdmin } from '../../fixtures/admin.js'
import { facts, setup } from './fixtures/unit.js'

t.test('listAdmins shows role and key count', async (t) => {
  const { db, admin } = setup(t)
  seedAdmin(db, 'viewer', 'Vic')
  const { humanId } = seedAdmin(db, 'owner', 'Olga')
  db.prepare('INSERT INTO role_assignments (human_id, role_id, created_at) VALUES (?, ?, ?)').run(
    humanId,
    'viewer',
    nowMicros(),
  )
  const rows = admin.listAdmins()
  t.match(
    rows.find((r) => r.name === 'Olga'),
    { role: 'owner', credentials: 0 },
  )
  t.match(
    rows.find((r) => r.name === 'Vic'),
    { role: 'viewer' },
  )
})

t.test('setRole: owner only, not yourself, never the last owner; applies at once', async (t) => {
  const { db, admin } = setup(t)
  const o1 = seedAdmin(db, 'owner', 'Olga')
  const op = seedAdmin(db, 'operator', 'Otto')
  const owner = { humanId: o1.humanId, name: 'Olga', role: 'owner' as const, scope: null }
  const operator = { humanId: op.humanId, name: 'Otto', role: 'operator' as const, scope: null }
  const otto = op.cookie.split('=')[1]!
  t.throws(() => admin.setRole(operator, o1.humanId, 'viewer', facts), {
    code: 'CLA_ERR_ADMIN_FORBIDDEN',
  })
  t.throws(() => admin.setRole(operator, op.humanId, 'owner', facts), {
    code: 'CLA_ERR_ADMIN_FORBIDDEN',
  })
  t.throws(
    () => admin.setRole(owner, o1.humanId, 'viewer', facts),
    { code: 'CLA_ERR_INVALID_INPUT', message: /your own role/ },
    'not yourself',
  )
  t.throws(() => admin.setRole('system', o1.humanId, 'operator'), /last owner/)
  t.throws(() => admin.setRole(owner, op.humanId, 'root', facts), { code: 'CLA_ERR_INVALID_INPUT' })
  t.throws(() => admin.setRole(owner, 'hum_nope', 'viewer', facts), { code: 'CLA_ERR_NOT_FOUND' })

  t.same(admin.setRole(owner, op.humanId, 'viewer', facts), {
    id: op.humanId,
    from: 'operator',
    to: 'viewer',
  })
  t.equal(admin.session(otto)?.role, 'viewer', 'the live session acts as viewer from now on')
  const byOwner = listEvents(db, { actor: o1.humanId })[0]!
  t.match(byOwner, { outcome: 'ok', reason: 'admin.role' })
  t.match(JSON.parse(String(byOwner.data)), { target: op.humanId, role: 'viewer' })
  // a second owner: now the first may be demoted (by the host's CLI path)
  t.same(admin.setRole('system', op.humanId, 'owner').to, 'owner')
  t.same(admin.setRole('system', o1.humanId, 'operator').from, 'owner')
  const bySystem = listEvents(db, { actor: 'system' })[0]!
  t.match(bySystem, { reason: 'admin.role' })
  t.match(JSON.parse(String(bySystem.data)), { id: o1.humanId, from: 'owner', to: 'operator' })
  t.equal(admin.findByName('Olga')?.role, 'operator')
  admin.disable('system', o1.humanId)
  t.throws(() => admin.setRole('system', o1.humanId, 'owner'), /disabled/)
  t.ok(verifyChain(db).ok, 'audit chain intact')
})

t.test('disable: owner only, not yourself, never the last owner; sessions end', async (t) => {
  const { db, admin } = setup(t)
  const o1 = seedAdmin(db, 'owner', 'Olga')
  const op = seedAdmin(db, 'operator', 'Otto')
  const owner = { humanId: o1.humanId, name: 'Olga', role: 'owner' as const, scope: null }
  const operator = { humanId: op.humanId, name: 'Otto', role: 'operator' as const, scope: null }
  t.throws(() => admin.disable(operator, o1.humanId, facts), { code: 'CLA_ERR_ADMIN_FORBIDDEN' })
  t.throws(
    () => admin.disable(owner, o1.humanId, facts),
    { code: 'CLA_ERR_INVALID_INPUT' },
    'not yourself',
  )
  t.throws(() => admin.disable('system', o1.humanId), /last owner/, 'never the last owner')
  t.throws(() => admin.disable(owner, 'hum_nope', facts), { code: 'CLA_ERR_NOT_FOUND' })
  t.ok(admin.session(op.cookie.split('=')[1]))
  admin.disable(owner, op.humanId, facts)
  t.equal(admin.session(op.cookie.split('=')[1]), null, "the disabled admin's session ended")
  t.equal(
    db.prepare('SELECT count(*) FROM admin_sessions WHERE human_id = ?').pluck().get(op.humanId),
    0,
  )
  t.match(listEvents(db, { actor: o1.humanId })[0], { outcome: 'ok', reason: 'admin.disable' })
  admin.disable(owner, op.humanId, facts) // already disabled: no-op, still audited
  const o2 = seedAdmin(db, 'owner', 'Oscar')
  admin.disable('system', o2.humanId)
  t.match(listEvents(db, { actor: 'system' })[0], { reason: 'admin.disable' })
  t.equal(admin.findByName('Oscar')?.disabled_at !== null, true)
  t.equal(admin.findByName('nobody'), undefined)
  t.ok(verifyChain(db).ok)
})
