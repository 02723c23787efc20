// setup-links.ts through the Admin facade: first-admin links, invites, checkToken, and
// first-admin links dying once an admin exists (spent in the enrollment ceremony).
import t from 'tap'
import { nowMicros, type openDb } from '../../../lib/db/open.js'
import type { Admin } from '../../../lib/admin/admin.js'
import { sha256hex } from '../../../lib/admin/secrets.js'
import { listEvents, verifyChain } from '../../../lib/audit/log.js'
import { seedAdmin } from '../../fixtures/admin.js'
import { SoftAuthenticator } from '../../fixtures/soft-authenticator.js'
import { actorOf, facts, setup } from './fixtures/unit.js'

t.test('first-admin token: issued only while there is no admin, one use, expires', async (t) => {
  const clock = { now: nowMicros() }
  const { db, admin } = setup(t, clock)
  t.notOk(admin.hasAdmins())
  const first = admin.firstAdminToken()
  t.ok(first, 'a token while no admin exists')
  t.equal(first!.role, 'owner')
  t.same(admin.checkToken(first!.token).role, 'owner')
  // only the hash is stored
  const row = db.prepare('SELECT token_hash, created_by FROM setup_tokens').get() as {
    token_hash: string
    created_by: string
  }
  t.equal(row.token_hash, sha256hex(first!.token))
  t.equal(row.created_by, 'setup', 'marked as a first-admin link')
  t.equal(listEvents(db, { kind: 'admin.action' })[0]?.reason, 'setup.token', 'issuing is audited')

  t.throws(() => admin.checkToken('not-a-token-at-all'), { code: 'CLA_ERR_ADMIN_SETUP_TOKEN' })
  t.throws(() => admin.checkToken(undefined), { code: 'CLA_ERR_ADMIN_SETUP_TOKEN' })
  clock.now += 25 * 3600e6
  t.throws(
    () => admin.checkToken(first!.token),
    { code: 'CLA_ERR_ADMIN_SETUP_TOKEN' },
    'expired after 24 h',
  )

  seedAdmin(db, 'owner')
  t.ok(admin.hasAdmins())
  t.equal(admin.firstAdminToken(), null, 'no setup token once an admin exists')
})

t.test('invite: owner only; refusals and grants are audited', async (t) => {
  const { db, admin } = setup(t)
  const owner = actorOf(db, 'owner')
  const operator = actorOf(db, 'operator')
  const viewer = actorOf(db, 'viewer')
  for (const a of [operator, viewer]) {
    const before = db.prepare('SELECT count(*) FROM setup_tokens').pluck().get() as number
    t.throws(
      () => admin.invite(a, 'viewer', facts),
      { code: 'CLA_ERR_ADMIN_FORBIDDEN' },
      `${a.role} cannot invite`,
    )
    t.equal(
      db.prepare('SELECT count(*) FROM setup_tokens').pluck().get(),
      before,
      'no token was created',
    )
    const ev = listEvents(db, { actor: a.humanId })[0]!
    t.match(ev, { kind: 'admin.action', outcome: 'refused', reason: 'CLA_ERR_ADMIN_FORBIDDEN' })
  }
  const inv = admin.invite(owner, 'operator', facts)
  t.equal(admin.checkToken(inv.token).role, 'operator')
  const ev = listEvents(db, { actor: owner.humanId })[0]!
  t.match(ev, { kind: 'admin.action', outcome: 'ok', reason: 'admin.invite', ip: '127.0.0.1' })
  t.notMatch(ev.data ?? '', inv.token, 'the token itself is not in the audit log')
  t.throws(() => admin.invite(owner, 'root' as never, facts), { code: 'CLA_ERR_INVALID_INPUT' })
  t.ok(verifyChain(db).ok)
})

// --- first-admin links die once an admin exists (issue 11, item 5) -------------------------

const tokenRow = (db: ReturnType<typeof openDb>, token: string) =>
  db
    .prepare('SELECT used_at, used_by FROM setup_tokens WHERE token_hash = ?')
    .get(sha256hex(token)) as { used_at: number | null; used_by: string | null }
const setupRefusals = (db: ReturnType<typeof openDb>) =>
  listEvents(db, { kind: 'admin.auth', outcome: 'refused' }).filter(
    (e) => e.reason === 'CLA_ERR_ADMIN_SETUP_TOKEN',
  )

async function enroll(admin: Admin, token: string, name: string, key = new SoftAuthenticator()) {
  const reg = await admin.startEnrollment({ token, name }, facts)
  return admin.finishEnrollment(
    { ceremonyId: reg.ceremonyId, response: key.register(reg.options, facts.origin) },
    facts,
  )
}

t.test('two setup links from two starts: the first enrolls, the second is refused', async (t) => {
  const { db, admin } = setup(t)
  const first = admin.firstAdminToken()! // first start
  const second = admin.firstAdminToken()! // a restart before anyone enrolled
  t.not(first.token, second.token)
  const owner = await enroll(admin, first.token, 'Ada')
  t.equal(owner.human.role, 'owner')

  t.match(tokenRow(db, second.token), { used_at: Number, used_by: null }, 'voided by enrollment')
  t.throws(() => admin.checkToken(second.token, facts), { code: 'CLA_ERR_ADMIN_SETUP_TOKEN' })
  t.match(setupRefusals(db), [{ ip: '127.0.0.1' }], 'the refusal is audited')
  await t.rejects(enroll(admin, second.token, 'Mallory'), { code: 'CLA_ERR_ADMIN_SETUP_TOKEN' })
  t.equal(db.prepare('SELECT count(*) FROM humans').pluck().get(), 1, 'no second owner')
  t.equal(admin.firstAdminToken(), null)
})

t.test('two setup links racing: both ceremonies start, only one enrolls', async (t) => {
  const { db, admin } = setup(t)
  const a = admin.firstAdminToken()!
  const b = admin.firstAdminToken()!
  const ka = new SoftAuthenticator()
  const kb = new SoftAuthenticator()
  const ra = await admin.startEnrollment({ token: a.token, name: 'Ada' }, facts)
  const rb = await admin.startEnrollment({ token: b.token, name: 'Bob' }, facts)
  const resA = ka.register(ra.options, facts.origin)
  const resB = kb.register(rb.options, facts.origin)
  await admin.finishEnrollment({ ceremonyId: ra.ceremonyId, response: resA }, facts)
  await t.rejects(admin.finishEnrollment({ ceremonyId: rb.ceremonyId, response: resB }, facts), {
    code: 'CLA_ERR_ADMIN_SETUP_TOKEN',
  })
  t.same(db.prepare('SELECT name FROM humans').pluck().all(), ['Ada'])
  t.match(setupRefusals(db).at(-1), { actor: 'unknown', ip: '127.0.0.1', data: /"name":"Bob"/ })
  t.ok(verifyChain(db).ok)
})

t.test(
  'a setup link used after an admin appeared another way is refused, voided and audited',
  async (t) => {
    const { db, admin } = setup(t)
    const early = admin.firstAdminToken()!
    const ceremonyLink = admin.firstAdminToken()!
    const reg = await admin.startEnrollment({ token: ceremonyLink.token, name: 'Eve' }, facts)
    // a link printed by a build before 'setup' marked them: made by 'system', audited as setup.token
    const legacy = admin.firstAdminToken()!
    db.prepare("UPDATE setup_tokens SET created_by = 'system' WHERE token_hash = ?").run(
      sha256hex(legacy.token),
    )
    seedAdmin(db, 'owner', 'Olga') // e.g. enrolled with a host invite on another build
    const hostInvite = admin.systemInvite('owner') // `clavitor admin invite` stays valid

    t.throws(() => admin.checkToken(early.token, facts), { code: 'CLA_ERR_ADMIN_SETUP_TOKEN' })
    t.match(tokenRow(db, early.token), { used_at: Number, used_by: null }, 'voided when shown')
    t.match(
      setupRefusals(db).at(-1),
      { ip: '127.0.0.1', data: /"action":"enroll".*first-admin setup link used after/ },
      'audited',
    )
    t.throws(() => admin.checkToken(early.token), { code: 'CLA_ERR_ADMIN_SETUP_TOKEN' })

    t.throws(() => admin.checkToken(legacy.token), { code: 'CLA_ERR_ADMIN_SETUP_TOKEN' })
    t.match(tokenRow(db, legacy.token), { used_at: Number }, 'a legacy setup link is voided too')

    // a ceremony begun before the admin existed: refused at the end, the link spent
    const before = setupRefusals(db).length
    await t.rejects(
      admin.finishEnrollment(
        {
          ceremonyId: reg.ceremonyId,
          response: new SoftAuthenticator().register(reg.options, facts.origin),
        },
        facts,
      ),
      { code: 'CLA_ERR_ADMIN_SETUP_TOKEN' },
    )
    t.match(tokenRow(db, ceremonyLink.token), { used_at: Number, used_by: null })
    t.equal(setupRefusals(db).length, before + 1, 'one refusal row')
    t.same(db.prepare('SELECT name FROM humans').pluck().all(), ['Olga'], 'nobody enrolled')

    t.equal(admin.checkToken(hostInvite.token).role, 'owner', 'a host invite is not a setup link')
    t.ok(verifyChain(db).ok)
  },
)
