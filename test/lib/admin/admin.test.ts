import t, { type Test } from 'tap'
import { openDb, nowMicros } from '../../../lib/db/open.js'
import { Admin } from '../../../lib/admin/admin.js'
import { can, strongest } from '../../../lib/admin/roles.js'
import { sha256hex } from '../../../lib/admin/secrets.js'
import { listEvents, verifyChain } from '../../../lib/audit/log.js'
import { isClavitorError } from '../../../lib/errors.js'
import { seedAdmin } from '../../fixtures/admin.js'
import { SoftAuthenticator } from '../../fixtures/soft-authenticator.js'

const facts = { rpID: 'localhost', origin: 'http://localhost:8080', ip: '127.0.0.1' }

function setup(t: Test, clock?: { now: number }) {
  const dir = t.testdir({})
  const db = openDb(`${dir}/meta.db`)
  t.teardown(() => db.close())
  const admin = new Admin(db, clock ? { now: () => clock.now } : {})
  return { db, admin }
}
const actorOf = (db: ReturnType<typeof openDb>, role: 'owner' | 'operator' | 'viewer') => {
  const { humanId } = seedAdmin(db, role)
  return { humanId, name: role, role }
}

t.test('roles: owner ⊃ operator ⊃ viewer', async (t) => {
  t.ok(can('owner', 'admins'))
  t.notOk(can('operator', 'admins'))
  t.ok(can('operator', 'change'))
  t.notOk(can('viewer', 'change'))
  t.ok(can('viewer', 'read'))
  t.equal(strongest(['viewer', 'owner', 'operator']), 'owner')
  t.equal(strongest([]), undefined)
})

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

t.test('options are checked', async (t) => {
  const { db } = setup(t)
  t.throws(() => new Admin(db, { sessionTtlMs: 0 }), { code: 'CLA_ERR_INVALID_OPTION' })
})

t.test('setRole: owner only, not yourself, never the last owner; applies at once', async (t) => {
  const { db, admin } = setup(t)
  const o1 = seedAdmin(db, 'owner', 'Olga')
  const op = seedAdmin(db, 'operator', 'Otto')
  const owner = { humanId: o1.humanId, name: 'Olga', role: 'owner' as const }
  const operator = { humanId: op.humanId, name: 'Otto', role: 'operator' as const }
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
  const owner = { humanId: o1.humanId, name: 'Olga', role: 'owner' as const }
  const operator = { humanId: op.humanId, name: 'Otto', role: 'operator' as const }
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
  admin.disable({ humanId: other.humanId, name: 'Olga', role: 'owner' }, s.human.humanId, facts)
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
