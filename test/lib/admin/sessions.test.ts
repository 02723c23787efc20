// sessions.ts through the Admin facade: lookup, absolute and idle end, logout.
import t from 'tap'
import { nowMicros } from '../../../lib/db/open.js'
import { Admin } from '../../../lib/admin/admin.js'
import { sha256hex } from '../../../lib/admin/secrets.js'
import { listEvents } from '../../../lib/audit/log.js'
import { seedAdmin } from '../../fixtures/admin.js'
import { facts, setup } from './fixtures/unit.js'

t.test(
  'sessions: an idle session ends; use keeps it alive up to its absolute lifetime',
  async (t) => {
    const clock = { now: nowMicros() }
    const { db, admin } = setup(t, clock)
    t.equal(admin.sessionIdleMs, 30 * 60_000, 'default idle limit: 30 minutes')
    const { cookie } = seedAdmin(db, 'owner') // absolute lifetime 1 h from now
    const value = cookie.split('=')[1]!
    const minute = 60e6
    for (let i = 1; i <= 2; i++) {
      clock.now += 29 * minute
      t.ok(admin.session(value), `used after 29 idle minutes (${i})`)
    }
    t.equal(
      db.prepare('SELECT last_seen_at FROM admin_sessions').pluck().get(),
      clock.now,
      'last use recorded',
    )
    clock.now += 30 * minute
    t.equal(admin.session(value), null, 'ended after 30 idle minutes')
    t.equal(db.prepare('SELECT count(*) FROM admin_sessions').pluck().get(), 0, 'row removed')

    // in use every 20 minutes, it still ends at its absolute lifetime
    const b = seedAdmin(db, 'owner').cookie.split('=')[1]!
    const start = nowMicros()
    clock.now = start
    let alive = 0
    while (admin.session(b)) {
      alive++
      clock.now += 20 * minute
    }
    t.equal(alive, 3, 'alive at 0, 20 and 40 minutes; gone at 60 (absolute 1 h)')
    t.throws(() => new Admin(db, { sessionIdleMs: 0 }), { code: 'CLA_ERR_INVALID_OPTION' })
  },
)

t.test('sessions: valid, expired, disabled admin, logout', async (t) => {
  const clock = { now: nowMicros() }
  const { db, admin } = setup(t, clock)
  const { humanId, cookie } = seedAdmin(db, 'operator', 'Ada')
  const value = cookie.split('=')[1]!
  const s = admin.session(value)
  t.match(s, { humanId, name: 'Ada', role: 'operator', sessionHash: sha256hex(value) })
  t.equal(admin.session('short'), null)
  t.equal(admin.session(undefined), null)
  t.equal(admin.session('x'.repeat(43)), null, 'unknown cookie')

  clock.now += 2 * 3600e6
  t.equal(admin.session(value), null, 'expired')
  t.equal(db.prepare('SELECT count(*) FROM admin_sessions').pluck().get(), 0, 'expired row removed')

  const b = seedAdmin(db, 'owner')
  clock.now = nowMicros()
  const bv = b.cookie.split('=')[1]!
  t.ok(admin.session(bv))
  admin.logout(bv, facts)
  t.equal(admin.session(bv), null, 'logged out')
  t.match(listEvents(db, { kind: 'admin.auth' })[0], {
    actor: b.humanId,
    reason: 'logout',
    outcome: 'ok',
  })

  const c = seedAdmin(db, 'owner')
  db.prepare('UPDATE humans SET disabled_at = ? WHERE id = ?').run(nowMicros(), c.humanId)
  t.equal(admin.session(c.cookie.split('=')[1]), null, 'disabled admin has no session')
})
