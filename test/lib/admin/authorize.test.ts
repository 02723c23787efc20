// authorize.ts through the Admin facade: the permission check and the audit row of every
// outcome of perform / performAsync.
import t from 'tap'
import { listEvents, verifyChain } from '../../../lib/audit/log.js'
import { isClavitorError } from '../../../lib/errors.js'
import { actorOf, facts, setup } from './fixtures/unit.js'

t.test('perform / performAsync: permission, ok, refused and error outcomes', async (t) => {
  const { db, admin } = setup(t)
  const viewer = actorOf(db, 'viewer')
  const operator = actorOf(db, 'operator')
  let ran = 0
  t.throws(() => admin.perform(viewer, 'x.change', 'change', facts, {}, () => ran++), {
    code: 'CLA_ERR_ADMIN_FORBIDDEN',
  })
  t.equal(ran, 0, 'a viewer changes nothing')
  t.equal(
    admin.perform(operator, 'x.change', 'change', facts, { a: 1 }, () => ({ id: 'cus_1' })).id,
    'cus_1',
  )
  const ok = listEvents(db, { actor: operator.humanId })[0]!
  t.match(ok, { outcome: 'ok', reason: 'x.change' })
  t.same(JSON.parse(ok.data!), { action: 'x.change', a: 1, id: 'cus_1' })
  await t.rejects(
    admin.performAsync(operator, 'x.async', 'change', facts, {}, async () => {
      throw Object.assign(new Error('boom'))
    }),
    /boom/,
  )
  t.match(listEvents(db, { actor: operator.humanId })[0], {
    outcome: 'error',
    reason: 'CLA_ERR_INTERNAL',
  })
  const v = await admin.performAsync(operator, 'x.async', 'change', facts, {}, async () => 7)
  t.equal(v, 7)
  await t.rejects(
    admin.performAsync(viewer, 'x.async', 'change', facts, {}, async () => 1),
    { code: 'CLA_ERR_ADMIN_FORBIDDEN' },
  )
  t.ok(verifyChain(db).ok)
  t.ok(isClavitorError(new Error('x')) === false)
})
