// webauthn.ts through the Admin facade: enrollment and login ceremonies, their
// server-side challenges, and the full ceremonies with a software authenticator.
import t from 'tap'
import { nowMicros } from '../../../lib/db/open.js'
import { sha256hex } from '../../../lib/admin/secrets.js'
import { listEvents, verifyChain } from '../../../lib/audit/log.js'
import { seedAdmin } from '../../fixtures/admin.js'
import { SoftAuthenticator } from '../../fixtures/soft-authenticator.js'
import { facts, setup } from './fixtures/unit.js'

t.test('enrollment ceremony: input checks, server-side challenge, one use', async (t) => {
  const { db, admin } = setup(t)
  const tok = admin.firstAdminToken()!
  await t.rejects(admin.startEnrollment({ token: 'nope-nope-nope-nope', name: 'Ada' }, facts), {
    code: 'CLA_ERR_ADMIN_SETUP_TOKEN',
  })
  await t.rejects(admin.startEnrollment({ token: tok.token, name: '<script>' }, facts), {
    code: 'CLA_ERR_INVALID_INPUT',
  })
  await t.rejects(admin.startEnrollment({ token: tok.token, name: '' }, facts), {
    code: 'CLA_ERR_INVALID_INPUT',
  })
  const { ceremonyId, options } = await admin.startEnrollment(
    { token: tok.token, name: 'Ada Lovelace' },
    facts,
  )
  t.equal(options.rp.id, 'localhost')
  t.equal(options.user.name, 'Ada Lovelace')
  const row = db
    .prepare('SELECT kind, challenge FROM admin_challenges WHERE id_hash = ?')
    .get(sha256hex(ceremonyId)) as {
    kind: string
    challenge: string
  }
  t.same(
    row,
    { kind: 'register', challenge: options.challenge },
    'challenge kept on the server, keyed by the ceremony id hash',
  )

  // A response that does not verify: refused, audited, ceremony consumed, token still usable.
  await t.rejects(
    admin.finishEnrollment(
      { ceremonyId, response: { id: 'x', rawId: 'x', type: 'public-key', response: {} } },
      facts,
    ),
    {
      code: 'CLA_ERR_WEBAUTHN_FAILED',
    },
  )
  t.equal(db.prepare('SELECT count(*) FROM admin_challenges').pluck().get(), 0, 'ceremony used up')
  await t.rejects(
    admin.finishEnrollment({ ceremonyId, response: {} }, facts),
    { code: 'CLA_ERR_WEBAUTHN_FAILED' },
    'no replay',
  )
  t.equal(db.prepare('SELECT count(*) FROM humans').pluck().get(), 0, 'nobody enrolled')
  t.equal(admin.checkToken(tok.token).role, 'owner', 'token not consumed by a failed attempt')
  t.ok(listEvents(db, { kind: 'admin.auth', outcome: 'refused' }).length >= 2)
})

t.test('ceremonies expire', async (t) => {
  const clock = { now: nowMicros() }
  const { admin } = setup(t, clock)
  const { ceremonyId } = await admin.startLogin(facts)
  clock.now += 6 * 60e6
  await t.rejects(admin.finishLogin({ ceremonyId, response: {} }, facts), {
    code: 'CLA_ERR_WEBAUTHN_FAILED',
  })
})

t.test('login ceremony: unknown credential refused and audited', async (t) => {
  const { db, admin } = setup(t)
  const { ceremonyId, options } = await admin.startLogin(facts)
  t.equal(options.rpId, 'localhost')
  t.same(options.allowCredentials ?? [], [], 'discoverable credentials: no user name needed')
  await t.rejects(admin.finishLogin({ ceremonyId, response: { id: 'unknown-cred' } }, facts), {
    code: 'CLA_ERR_WEBAUTHN_FAILED',
  })
  t.match(listEvents(db, { kind: 'admin.auth' })[0], {
    outcome: 'refused',
    actor: 'unknown',
    reason: 'CLA_ERR_WEBAUTHN_FAILED',
  })
  await t.rejects(admin.finishLogin({ ceremonyId: 42, response: {} }, facts), {
    code: 'CLA_ERR_WEBAUTHN_FAILED',
  })
})

t.test('full ceremonies with a software key: enroll, login, counter, origin, replay', async (t) => {
  const { db, admin } = setup(t)
  const key = new SoftAuthenticator()
  const tok = admin.firstAdminToken()!
  const reg = await admin.startEnrollment({ token: tok.token, name: 'Ada' }, facts)
  const s = await admin.finishEnrollment(
    { ceremonyId: reg.ceremonyId, response: key.register(reg.options, facts.origin) },
    facts,
  )
  t.match(s.human, { name: 'Ada', role: 'owner' })
  t.match(admin.session(s.token), { name: 'Ada', role: 'owner' })
  t.throws(
    () => admin.checkToken(tok.token),
    { code: 'CLA_ERR_ADMIN_SETUP_TOKEN' },
    'the setup token is spent',
  )
  t.match(db.prepare('SELECT used_by, created_by FROM setup_tokens').get(), {
    used_by: s.human.humanId,
    created_by: 'setup',
  })
  t.match(listEvents(db, { actor: s.human.humanId })[0], {
    kind: 'admin.action',
    reason: 'admin.enroll',
  })
  t.equal(admin.firstAdminToken(), null)

  // the same key again with an invite: refused as already enrolled
  const inv = admin.invite(s.human, 'viewer', facts)
  const reg2 = await admin.startEnrollment({ token: inv.token, name: 'Bob' }, facts)
  await t.rejects(
    admin.finishEnrollment(
      { ceremonyId: reg2.ceremonyId, response: key.register(reg2.options, facts.origin) },
      facts,
    ),
    {
      code: 'CLA_ERR_WEBAUTHN_FAILED',
    },
  )
  t.equal(admin.checkToken(inv.token).role, 'viewer', 'the invite survives the failed attempt')
  await t.rejects(admin.startEnrollment({ token: inv.token, name: 'Ada' }, facts), /exists already/)

  // login
  const l1 = await admin.startLogin(facts)
  const resp = key.login(l1.options, facts.origin)
  const ls = await admin.finishLogin({ ceremonyId: l1.ceremonyId, response: resp }, facts)
  t.equal(ls.human.humanId, s.human.humanId)
  t.not(ls.token, s.token, 'a new session per login')
  t.equal(db.prepare('SELECT counter FROM webauthn_credentials').pluck().get(), 1, 'counter stored')
  t.match(listEvents(db, { kind: 'admin.auth' })[0], {
    outcome: 'ok',
    reason: 'login',
    actor: s.human.humanId,
  })

  // replaying the same assertion on a new ceremony fails (challenge differs)
  const l2 = await admin.startLogin(facts)
  await t.rejects(admin.finishLogin({ ceremonyId: l2.ceremonyId, response: resp }, facts), {
    code: 'CLA_ERR_WEBAUTHN_FAILED',
  })
  // a response made for another origin fails
  const l3 = await admin.startLogin(facts)
  await t.rejects(
    admin.finishLogin(
      { ceremonyId: l3.ceremonyId, response: key.login(l3.options, 'https://evil.example') },
      facts,
    ),
    { code: 'CLA_ERR_WEBAUTHN_FAILED' },
  )
  // a cloned key (counter going backwards) fails
  const l4 = await admin.startLogin(facts)
  key.counter = 0
  await t.rejects(
    admin.finishLogin(
      { ceremonyId: l4.ceremonyId, response: key.login(l4.options, facts.origin) },
      facts,
    ),
    {
      code: 'CLA_ERR_WEBAUTHN_FAILED',
    },
  )
  // a disabled admin's key no longer logs in
  const other = seedAdmin(db, 'owner', 'Olga')
  admin.disable(
    { humanId: other.humanId, name: 'Olga', role: 'owner', scope: null },
    s.human.humanId,
    facts,
  )
  key.counter = 10
  const l5 = await admin.startLogin(facts)
  await t.rejects(
    admin.finishLogin(
      { ceremonyId: l5.ceremonyId, response: key.login(l5.options, facts.origin) },
      facts,
    ),
    /not enrolled here|disabled/,
  )
  t.ok(verifyChain(db).ok)
})

t.test(
  'an unknown or expired ceremony is audited with the request address and route',
  async (t) => {
    const clock = { now: nowMicros() }
    const { db, admin } = setup(t, clock)
    const at = { ...facts, ip: '203.0.113.7', route: 'POST /admin/setup/verify' }
    const tok = admin.firstAdminToken()!
    const enroll = await admin.startEnrollment({ token: tok.token, name: 'Ada' }, at)
    const login = await admin.startLogin(at)
    clock.now += 6 * 60e6 // both expired
    await t.rejects(admin.finishEnrollment({ ceremonyId: enroll.ceremonyId, response: {} }, at), {
      code: 'CLA_ERR_WEBAUTHN_FAILED',
    })
    await t.rejects(admin.finishEnrollment({ ceremonyId: 'no-such-ceremony', response: {} }, at), {
      code: 'CLA_ERR_WEBAUTHN_FAILED',
    })
    const loginAt = { ...at, route: 'POST /admin/login/verify' }
    await t.rejects(admin.finishLogin({ ceremonyId: login.ceremonyId, response: {} }, loginAt), {
      code: 'CLA_ERR_WEBAUTHN_FAILED',
    })
    const rows = listEvents(db, { kind: 'admin.auth', outcome: 'refused', order: 'asc' })
    t.same(
      rows.map((r) => [JSON.parse(r.data!).action, JSON.parse(r.data!).why, r.ip, r.route]),
      [
        ['enroll', 'unknown or expired ceremony', '203.0.113.7', 'POST /admin/setup/verify'],
        ['enroll', 'unknown or expired ceremony', '203.0.113.7', 'POST /admin/setup/verify'],
        ['login', 'unknown or expired ceremony', '203.0.113.7', 'POST /admin/login/verify'],
      ],
      'each refusal carries the ip and route, as the other refusals do',
    )
  },
)
