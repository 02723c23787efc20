// Route-level tests of the admin UI through inject(): sessions, CSRF, roles, escaping.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { openCore, type Core } from '../../../lib/core.js'
import { nowMicros } from '../../../lib/db/open.js'
import { listEvents } from '../../../lib/audit/log.js'
import { buildCoreApp } from '../../../server/app.js'
import { csrfFor, seedAdmin } from '../../fixtures/admin.js'
import { SoftAuthenticator } from '../../fixtures/soft-authenticator.js'

// The core opens its WORM store too: keep it outside the repo, unsealed.
process.env.CLAVITOR_PROTECTION = 'off'

async function setup(t: Test, extra: { authRateLimitMax?: number } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'clavitor-admin-'))
  const core: Core = await openCore({ dataDir: dir })
  const setupUrls: string[] = []
  const app = await buildCoreApp({
    core,
    admin: { secret: 'x'.repeat(43), onSetupUrl: (u) => setupUrls.push(u), ...extra },
  })
  t.teardown(async () => {
    await app.close()
    await core.close()
    spawnSync('chattr', ['-R', '-i', '-a', dir])
    rmSync(dir, { recursive: true, force: true })
  })
  return { core, app, setupUrls }
}

function addCustomer(
  core: Core,
  id: string,
  level: 1 | 2 | 3,
  parent: string | null,
  name: string,
) {
  const now = nowMicros()
  core.db
    .prepare(
      'INSERT INTO customers (id, parent_id, level, name, email, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
    )
    .run(id, parent, level, name, `${id}@example.com`, now, now)
}

const count = (core: Core, table: string) =>
  core.db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number

t.test('no session: every page and action redirects to the login page', async (t) => {
  const { app, core } = await setup(t)
  for (const url of [
    '/admin',
    '/admin/',
    '/admin/customers',
    '/admin/customers/cus_x',
    '/admin/events',
    '/admin/admins',
    '/admin/pops',
    '/admin/vaults',
    '/admin/subscriptions',
    '/admin/transactions',
    '/admin/discounts',
    '/admin/nowhere',
  ]) {
    const res = await app.inject(url)
    t.equal(res.statusCode, 303, `${url} → 303`)
    t.equal(res.headers.location, '/admin/login', `${url} → login`)
  }
  const post = await app.inject({
    method: 'POST',
    url: '/admin/customers',
    payload: { name: 'x', email: 'x@example.com' },
  })
  t.equal(post.statusCode, 303)
  t.equal(post.headers.location, '/admin/login')
  const inv = await app.inject({
    method: 'POST',
    url: '/admin/admins/invite',
    payload: { role: 'owner' },
  })
  t.equal(inv.headers.location, '/admin/login')
  t.equal(count(core, 'setup_tokens'), 0, 'nothing created')
  const forged = await app.inject({
    url: '/admin',
    headers: { cookie: 'clavitor_admin=' + 'A'.repeat(43) },
  })
  t.equal(forged.headers.location, '/admin/login', 'an unknown cookie is no session')
})

t.test('public pieces: login page, assets, headers', async (t) => {
  const { app } = await setup(t)
  const res = await app.inject('/admin/login')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/html/)
  const csp = String(res.headers['content-security-policy'])
  t.match(csp, /script-src 'self'/)
  t.notMatch(csp, /unsafe-inline/)
  t.match(csp, /frame-ancestors 'none'/)
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  t.ok(res.headers['strict-transport-security'])
  t.equal(res.headers['cache-control'], 'no-store')
  t.match(res.body, /src="\/admin\/assets\/simplewebauthn-browser\.js"/)
  t.notMatch(res.body, /<script>/, 'no inline script')
  const csrfCookie = res.cookies.find((c) => c.name === 'clavitor_csrf')
  t.ok(csrfCookie, 'CSRF secret cookie set')
  t.match(csrfCookie, { httpOnly: true, sameSite: 'Strict', path: '/admin' })
  for (const a of [
    '/admin/assets/admin.css',
    '/admin/assets/webauthn.js',
    '/admin/assets/simplewebauthn-browser.js',
  ]) {
    const r = await app.inject(a)
    t.equal(r.statusCode, 200, a)
  }
  t.match(
    (await app.inject('/admin/assets/simplewebauthn-browser.js')).body,
    /SimpleWebAuthnBrowser/,
  )
})

t.test('first start prints a setup URL; the setup page checks its token', async (t) => {
  const { app, setupUrls } = await setup(t)
  await app.listen({ port: 0, host: '127.0.0.1' })
  t.equal(setupUrls.length, 1)
  const url = new URL(setupUrls[0]!)
  t.equal(url.hostname, 'localhost')
  t.equal(url.pathname, '/admin/setup')
  const ok = await app.inject(url.pathname + url.search)
  t.equal(ok.statusCode, 200)
  t.match(ok.body, /enrolls a new <b>owner<\/b>/)
  const bad = await app.inject('/admin/setup?token=' + 'B'.repeat(43))
  t.equal(bad.statusCode, 403)
  t.match(bad.body, /unknown, expired or already used/)
  // JSON ceremony endpoints also need the CSRF token
  const noCsrf = await app.inject({
    method: 'POST',
    url: '/admin/setup/options',
    payload: { token: url.searchParams.get('token'), name: 'Ada' },
  })
  t.equal(noCsrf.statusCode, 403)
  t.equal(noCsrf.json().error.code, 'FST_CSRF_MISSING_SECRET')
  const page = await app.inject(url.pathname + url.search)
  const token = /data-csrf="([^"]+)"/.exec(page.body)![1]!
  const cookie = page.cookies.map((c) => `${c.name}=${c.value}`).join('; ')
  const opt = await app.inject({
    method: 'POST',
    url: '/admin/setup/options',
    headers: { cookie, 'x-csrf-token': token },
    payload: { token: url.searchParams.get('token'), name: 'Ada' },
  })
  t.equal(opt.statusCode, 200)
  t.match(opt.json(), {
    ceremonyId: String,
    options: { rp: { id: 'localhost' }, user: { name: 'Ada' } },
  })
  const verify = await app.inject({
    method: 'POST',
    url: '/admin/setup/verify',
    headers: { cookie, 'x-csrf-token': token },
    payload: { ceremonyId: opt.json().ceremonyId, response: { id: 'x' } },
  })
  t.equal(verify.statusCode, 401)
  t.equal(verify.json().error.code, 'CLA_ERR_WEBAUTHN_FAILED')
  t.notOk(
    verify.cookies.find((c) => c.name === 'clavitor_admin'),
    'no session for a failed ceremony',
  )
})

t.test('two starts print two setup links: the first enrolls, the second is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'clavitor-admin-'))
  const core: Core = await openCore({ dataDir: dir })
  const origin = 'http://localhost:8080'
  const urls: string[] = []
  const start = async () => {
    const app = await buildCoreApp({
      core,
      admin: { secret: 'x'.repeat(43), origin, onSetupUrl: (u) => urls.push(u) },
    })
    await app.listen({ port: 0, host: '127.0.0.1' })
    return app
  }
  await (await start()).close() // first start, nobody enrolls
  const app = await start() // a restart prints a new link
  t.teardown(async () => {
    await app.close()
    await core.close()
    spawnSync('chattr', ['-R', '-i', '-a', dir])
    rmSync(dir, { recursive: true, force: true })
  })
  t.equal(urls.length, 2)
  const [first, second] = urls.map((u) => new URL(u)) as [URL, URL]
  t.not(first.search, second.search)

  // enroll the first owner with the first link
  const page = await app.inject(first.pathname + first.search)
  t.equal(page.statusCode, 200)
  const csrf = /data-csrf="([^"]+)"/.exec(page.body)![1]!
  const cookie = page.cookies.map((c) => `${c.name}=${c.value}`).join('; ')
  const headers = { cookie, 'x-csrf-token': csrf }
  const opt = await app.inject({
    method: 'POST',
    url: '/admin/setup/options',
    headers,
    payload: { token: first.searchParams.get('token'), name: 'Ada' },
  })
  t.equal(opt.statusCode, 200)
  const verify = await app.inject({
    method: 'POST',
    url: '/admin/setup/verify',
    headers,
    payload: {
      ceremonyId: opt.json().ceremonyId,
      response: new SoftAuthenticator().register(opt.json().options, origin),
    },
  })
  t.equal(verify.statusCode, 200)
  t.match(verify.json(), { ok: true, role: 'owner' })

  // the older link from the other start enrolls nobody
  const again = await app.inject(second.pathname + second.search)
  t.equal(again.statusCode, 403)
  t.match(again.body, /unknown, expired or already used/)
  const opt2 = await app.inject({
    method: 'POST',
    url: '/admin/setup/options',
    headers,
    payload: { token: second.searchParams.get('token'), name: 'Mallory' },
  })
  t.equal(opt2.statusCode, 403)
  t.equal(opt2.json().error.code, 'CLA_ERR_ADMIN_SETUP_TOKEN')
  t.equal(count(core, 'humans'), 1, 'one owner')
  t.match(
    listEvents(core.db, { kind: 'admin.auth', outcome: 'refused' }).filter(
      (e) => e.reason === 'CLA_ERR_ADMIN_SETUP_TOKEN',
    ),
    [{ route: 'POST /admin/setup/options' }, { route: 'GET /admin/setup' }],
    'both refusals audited with their route',
  )
})
t.test(
  'CSRF: a form POST without or with a wrong token is refused and changes nothing',
  async (t) => {
    const { app, core } = await setup(t)
    const owner = seedAdmin(core.db, 'owner')
    const { token, cookie } = await csrfFor(app, owner.cookie, '/admin/admins')
    const missing = await app.inject({
      method: 'POST',
      url: '/admin/admins/invite',
      headers: { cookie },
      payload: { role: 'viewer' },
    })
    t.equal(missing.statusCode, 403)
    t.match(missing.body, /did not come from this site/)
    const wrong = await app.inject({
      method: 'POST',
      url: '/admin/admins/invite',
      headers: { cookie },
      payload: { role: 'viewer', _csrf: token.slice(0, -2) + 'xx' },
    })
    t.equal(wrong.statusCode, 403)
    // a token minted for another session does not work for this one
    const other = seedAdmin(core.db, 'owner')
    const o = await csrfFor(app, other.cookie, '/admin/admins')
    const crossed = await app.inject({
      method: 'POST',
      url: '/admin/admins/invite',
      headers: { cookie: cookie },
      payload: { role: 'viewer', _csrf: o.token },
    })
    t.equal(crossed.statusCode, 403, "another session's token is refused")
    t.equal(count(core, 'setup_tokens'), 0, 'no invite created')
    const good = await app.inject({
      method: 'POST',
      url: '/admin/admins/invite',
      headers: { cookie },
      payload: { role: 'viewer', _csrf: token },
    })
    t.equal(good.statusCode, 200)
    t.match(good.body, /<code id="invite-url">http:\/\/localhost[^<]*\/admin\/setup\?token=/)
    t.equal(count(core, 'setup_tokens'), 1)
  },
)

t.test('roles: a viewer (and an operator, for admins) cannot change anything', async (t) => {
  const { app, core } = await setup(t)
  addCustomer(core, 'cus_msp', 1, null, 'MSP One')
  const viewer = seedAdmin(core.db, 'viewer')
  const v = await csrfFor(app, viewer.cookie, '/admin/customers')
  const custPage = await app.inject({ url: '/admin/customers', headers: { cookie: viewer.cookie } })
  t.notMatch(custPage.body, /id="create-customer"/, 'a viewer is offered no create form')
  const res = await app.inject({
    method: 'POST',
    url: '/admin/customers',
    headers: { cookie: v.cookie },
    payload: { parent_id: 'cus_msp', name: 'Sneaky', email: 's@example.com', _csrf: v.token },
  })
  t.equal(res.statusCode, 403)
  t.match(res.body, /may not change anything/)
  t.equal(count(core, 'customers'), 1)
  const inv = await app.inject({
    method: 'POST',
    url: '/admin/admins/invite',
    headers: { cookie: v.cookie },
    payload: { role: 'owner', _csrf: v.token },
  })
  t.equal(inv.statusCode, 403)
  const operator = seedAdmin(core.db, 'operator')
  const o = await csrfFor(app, operator.cookie, '/admin/admins')
  t.notMatch(
    (await app.inject({ url: '/admin/admins', headers: { cookie: operator.cookie } })).body,
    /Create enrollment link/,
  )
  const inv2 = await app.inject({
    method: 'POST',
    url: '/admin/admins/invite',
    headers: { cookie: o.cookie },
    payload: { role: 'owner', _csrf: o.token },
  })
  t.equal(inv2.statusCode, 403)
  t.equal(count(core, 'setup_tokens'), 0)
  const refused = listEvents(core.db, { kind: 'admin.action', outcome: 'refused' })
  t.equal(refused.length, 3, 'each refusal is an audit event')
  t.same(new Set(refused.map((e) => e.actor)), new Set([viewer.humanId, operator.humanId]))
})

t.test('a department offers no "create child" and a forged POST for it is refused', async (t) => {
  const { app, core } = await setup(t)
  addCustomer(core, 'cus_m', 1, null, 'MSP')
  addCustomer(core, 'cus_c', 2, 'cus_m', 'Customer')
  addCustomer(core, 'cus_d', 3, 'cus_c', 'Department')
  const op = seedAdmin(core.db, 'operator')
  const cust = await app.inject({ url: '/admin/customers/cus_c', headers: { cookie: op.cookie } })
  t.match(cust.body, /Create a department/)
  const dep = await app.inject({ url: '/admin/customers/cus_d', headers: { cookie: op.cookie } })
  t.equal(dep.statusCode, 200)
  t.notMatch(dep.body, /id="create-customer"/)
  t.match(dep.body, /A department has no children/)
  const c = await csrfFor(app, op.cookie, '/admin/customers/cus_d')
  const forged = await app.inject({
    method: 'POST',
    url: '/admin/customers',
    headers: { cookie: c.cookie },
    payload: { parent_id: 'cus_d', name: 'Sub-department', email: 'x@example.com', _csrf: c.token },
  })
  t.equal(forged.statusCode, 400)
  t.match(forged.body, /a department has no children/)
  t.equal(count(core, 'customers'), 3, 'nothing created')
  t.match(listEvents(core.db, { actor: op.humanId })[0], {
    outcome: 'refused',
    reason: 'CLA_ERR_BILLING_HIERARCHY',
  })
  const unknown = await app.inject({
    url: '/admin/customers/cus_nope',
    headers: { cookie: op.cookie },
  })
  t.equal(unknown.statusCode, 404)
})

t.test('HTML escaping: a customer named <script> is shown as text', async (t) => {
  const { app, core } = await setup(t)
  const evil = '<script>alert("x")</script>&"\''
  addCustomer(core, 'cus_evil', 1, null, evil)
  const owner = seedAdmin(core.db, 'owner')
  for (const url of ['/admin/customers', '/admin/customers/cus_evil']) {
    const res = await app.inject({ url, headers: { cookie: owner.cookie } })
    t.equal(res.statusCode, 200)
    t.notMatch(res.body, /<script>alert/, `${url}: not markup`)
    t.match(
      res.body,
      /&lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt;&amp;&quot;&#39;/,
      `${url}: escaped`,
    )
  }
  const ev = await app.inject({
    url: '/admin/events?kind=%3Cscript%3E',
    headers: { cookie: owner.cookie },
  })
  t.match(ev.body, /value="&lt;script&gt;"/, 'filter values are escaped too')
})

t.test('pages render for a session; events filter and chain status', async (t) => {
  const { app, core } = await setup(t)
  const owner = seedAdmin(core.db, 'owner', 'Olga')
  core.audit.append({ kind: 'pop.request', actor: 'pop-a', outcome: 'allowed' })
  core.audit.append({ kind: 'admin.action', actor: owner.humanId, outcome: 'ok', reason: 'test' })
  const now = nowMicros()
  core.db.prepare('INSERT INTO pops (id, created_at) VALUES (?, ?)').run('pop-a', now)
  core.db
    .prepare('INSERT INTO pop_sync_state (pop_id, lag_us, blobs, updated_at) VALUES (?, ?, ?, ?)')
    .run('pop-a', 90e6, 3, now)
  for (let i = 0; i < 5; i++)
    core.db
      .prepare('INSERT INTO pop_lag_samples (pop_id, at, lag_us) VALUES (?, ?, ?)')
      .run('pop-a', now - (5 - i) * 60e6, i * 30e6)
  for (const url of [
    '/admin',
    '/admin/customers',
    '/admin/subscriptions',
    '/admin/transactions',
    '/admin/vaults',
    '/admin/discounts',
    '/admin/pops',
    '/admin/admins',
    '/admin/events',
  ]) {
    const res = await app.inject({ url, headers: { cookie: owner.cookie } })
    t.equal(res.statusCode, 200, url)
    t.match(res.body, /Olga/, `${url} shows who is logged in`)
  }
  const dash = await app.inject({ url: '/admin', headers: { cookie: owner.cookie } })
  t.match(dash.body, /<svg viewBox/)
  t.match(dash.body, /<polyline[^>]*points="[0-9.,\s]+"/)
  const pops = await app.inject({ url: '/admin/pops', headers: { cookie: owner.cookie } })
  t.match(pops.body, /pop-a/)
  t.match(pops.body, /90 s/)
  const filtered = await app.inject({
    url: '/admin/events?kind=pop.request',
    headers: { cookie: owner.cookie },
  })
  t.match(filtered.body, /pop-a/)
  t.notMatch(filtered.body, /<td>admin\.action<\/td>/)
  t.match(filtered.body, /Audit chain verifies/)
  core.db.prepare("UPDATE events SET outcome = 'refused' WHERE id = 1").run()
  const broken = await app.inject({ url: '/admin/events', headers: { cookie: owner.cookie } })
  t.match(broken.body, /Audit chain BROKEN at event #1/)
})

t.test('the events page refuses a malformed page position (CLA_ERR_INVALID_INPUT)', async (t) => {
  const { app, core } = await setup(t)
  const owner = seedAdmin(core.db, 'owner', 'Olga')
  for (const before of ['abc', '12abc', '-3', '1.5']) {
    const res = await app.inject({
      url: `/admin/events?before=${before}`,
      headers: { cookie: owner.cookie },
    })
    t.equal(res.statusCode, 400, `before=${before}`)
    t.match(res.body, /beforeId must be a whole number/, `before=${before}: the library's refusal`)
  }
  const ok = await app.inject({ url: '/admin/events?before=2', headers: { cookie: owner.cookie } })
  t.equal(ok.statusCode, 200)
  const none = await app.inject({ url: '/admin/events?before=', headers: { cookie: owner.cookie } })
  t.equal(none.statusCode, 200, 'an empty before is the first page')
})

t.test('logout ends the session', async (t) => {
  const { app, core } = await setup(t)
  const owner = seedAdmin(core.db, 'owner')
  const c = await csrfFor(app, owner.cookie)
  const res = await app.inject({
    method: 'POST',
    url: '/admin/logout',
    headers: { cookie: c.cookie },
    payload: { _csrf: c.token },
  })
  t.equal(res.statusCode, 303)
  t.equal(res.headers.location, '/admin/login')
  t.equal(
    (await app.inject({ url: '/admin', headers: { cookie: owner.cookie } })).headers.location,
    '/admin/login',
  )
})

t.test(
  'an operator creates an MSP through the billing layer; without Paddle it shows as pending',
  async (t) => {
    const { app, core } = await setup(t)
    const op = seedAdmin(core.db, 'operator')
    const c = await csrfFor(app, op.cookie, '/admin/customers')
    const res = await app.inject({
      method: 'POST',
      url: '/admin/customers',
      headers: { cookie: c.cookie },
      payload: { name: 'Acme MSP', email: 'ops@acme.example', _csrf: c.token },
    })
    t.equal(res.statusCode, 303)
    const id = /^\/admin\/customers\/(.+)$/.exec(String(res.headers.location))![1]!
    const row = core.db
      .prepare('SELECT level, name, pending_since FROM customers WHERE id = ?')
      .get(id) as Record<string, unknown>
    t.match(row, { level: 1, name: 'Acme MSP' })
    t.ok(row.pending_since, 'pending: Paddle has not confirmed it')
    const page = await app.inject({ url: `/admin/customers/${id}`, headers: { cookie: op.cookie } })
    t.match(page.body, /badge pending/)
    t.match(page.body, /Create a customer/)
    t.match(listEvents(core.db, { actor: op.humanId })[0], {
      kind: 'admin.action',
      outcome: 'ok',
      reason: 'customer.create',
    })
    const bad = await app.inject({
      method: 'POST',
      url: '/admin/customers',
      headers: { cookie: c.cookie },
      payload: { name: 'No email', email: 'not-an-email', _csrf: c.token },
    })
    t.equal(bad.statusCode, 400)
    t.equal(count(core, 'customers'), 1)
  },
)

t.test('an owner disables another admin from the admins page', async (t) => {
  const { app, core } = await setup(t)
  const owner = seedAdmin(core.db, 'owner', 'Olga')
  const viewer = seedAdmin(core.db, 'viewer', 'Vic')
  const page = await app.inject({ url: '/admin/admins', headers: { cookie: owner.cookie } })
  t.match(page.body, new RegExp(`action="/admin/admins/${viewer.humanId}/disable"`))
  t.notMatch(
    page.body,
    new RegExp(`/admin/admins/${owner.humanId}/disable`),
    'no button to disable yourself',
  )
  const c = await csrfFor(app, owner.cookie, '/admin/admins')
  const res = await app.inject({
    method: 'POST',
    url: `/admin/admins/${viewer.humanId}/disable`,
    headers: { cookie: c.cookie },
    payload: { _csrf: c.token },
  })
  t.equal(res.statusCode, 303)
  t.equal(
    (await app.inject({ url: '/admin', headers: { cookie: viewer.cookie } })).headers.location,
    '/admin/login',
  )
  const vp = await app.inject({ url: '/admin/admins', headers: { cookie: owner.cookie } })
  t.match(vp.body, /disabled/)
})

t.test("an owner changes another admin's role from the admins page", async (t) => {
  const { app, core } = await setup(t)
  const owner = seedAdmin(core.db, 'owner', 'Olga')
  const viewer = seedAdmin(core.db, 'viewer', 'Vic')
  const page = await app.inject({ url: '/admin/admins', headers: { cookie: owner.cookie } })
  t.match(page.body, new RegExp(`action="/admin/admins/${viewer.humanId}/role"`))
  t.notMatch(page.body, new RegExp(`/admin/admins/${owner.humanId}/role`), 'not for yourself')
  const c = await csrfFor(app, owner.cookie, '/admin/admins')
  const noCsrf = await app.inject({
    method: 'POST',
    url: `/admin/admins/${viewer.humanId}/role`,
    headers: { cookie: c.cookie },
    payload: { role: 'operator' },
  })
  t.equal(noCsrf.statusCode, 403, 'CSRF token required')
  const res = await app.inject({
    method: 'POST',
    url: `/admin/admins/${viewer.humanId}/role`,
    headers: { cookie: c.cookie },
    payload: { _csrf: c.token, role: 'operator' },
  })
  t.equal(res.statusCode, 303)
  t.equal(core.admin.findByName('Vic')?.role, 'operator')
  // the viewer-now-operator may not change roles (owners only)
  const v = await csrfFor(app, viewer.cookie, '/admin/admins')
  const denied = await app.inject({
    method: 'POST',
    url: `/admin/admins/${owner.humanId}/role`,
    headers: { cookie: v.cookie },
    payload: { _csrf: v.token, role: 'viewer' },
  })
  t.equal(denied.statusCode, 403)
  t.equal(core.admin.findByName('Olga')?.role, 'owner')
})

t.test('login and setup endpoints are rate-limited per IP', async (t) => {
  const { app } = await setup(t, { authRateLimitMax: 3 })
  const codes: number[] = []
  for (let i = 0; i < 4; i++) codes.push((await app.inject('/admin/login')).statusCode)
  t.same(codes, [200, 200, 200, 429])
  const json: number[] = []
  for (let i = 0; i < 4; i++) {
    json.push(
      (await app.inject({ method: 'POST', url: '/admin/login/options', payload: {} })).statusCode,
    )
  }
  t.same(json, [403, 403, 403, 429], 'each endpoint has its own budget; no CSRF token here')
  t.equal((await app.inject('/admin/assets/admin.css')).statusCode, 200, 'assets are not limited')
})

t.test('the setup token stays out of the request logs', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'clavitor-admin-'))
  const core = await openCore({ dataDir: dir })
  const lines: string[] = []
  const app = await buildCoreApp({
    core,
    fastify: { logger: { level: 'info', stream: { write: (s: string) => void lines.push(s) } } },
    admin: { secret: 'y'.repeat(43), onSetupUrl: () => {} },
  })
  t.teardown(async () => {
    await app.close()
    await core.close()
    spawnSync('chattr', ['-R', '-i', '-a', dir])
    rmSync(dir, { recursive: true, force: true })
  })
  const tok = core.admin.firstAdminToken()!.token
  t.equal((await app.inject(`/admin/setup?token=${tok}`)).statusCode, 200)
  t.equal((await app.inject('/admin/login')).statusCode, 200)
  t.ok(
    lines.some((l) => l.includes('/admin/login')),
    'requests are logged',
  )
  t.notOk(
    lines.some((l) => l.includes(tok)),
    'but not the token',
  )
})

t.test(
  'an operator sets an MSP margin through Billing; a second one and non-MSPs are refused',
  async (t) => {
    const { app, core } = await setup(t)
    addCustomer(core, 'cus_m', 1, null, 'MSP')
    addCustomer(core, 'cus_c', 2, 'cus_m', 'Customer')
    const op = seedAdmin(core.db, 'operator')
    const page = await app.inject({ url: '/admin/customers/cus_m', headers: { cookie: op.cookie } })
    t.match(page.body, /id="create-margin"/)
    t.notMatch(
      (await app.inject({ url: '/admin/customers/cus_c', headers: { cookie: op.cookie } })).body,
      /create-margin/,
    )
    const c = await csrfFor(app, op.cookie, '/admin/customers/cus_m')
    const post = (payload: Record<string, string>) =>
      app.inject({
        method: 'POST',
        url: '/admin/discounts',
        headers: { cookie: c.cookie },
        payload: { ...payload, _csrf: c.token },
      })
    t.equal(
      (await post({ msp_id: 'cus_m', description: 'Margin', percentage: '150' })).statusCode,
      400,
      'over 100 %',
    )
    t.equal(
      (await post({ msp_id: 'cus_c', description: 'Margin', percentage: '10' })).statusCode,
      400,
      'not an MSP',
    )
    const ok = await post({ msp_id: 'cus_m', description: 'Northwind margin', percentage: '12.5' })
    t.equal(ok.statusCode, 303)
    const row = core.db
      .prepare("SELECT type, amount, msp_id, pending_since FROM discounts WHERE msp_id = 'cus_m'")
      .get()
    t.match(row, { type: 'percentage', amount: '12.5', msp_id: 'cus_m' })
    const after = await app.inject({
      url: '/admin/customers/cus_m',
      headers: { cookie: op.cookie },
    })
    t.match(after.body, /id="msp-margin"/)
    t.match(after.body, /12\.5 %/)
    t.notMatch(after.body, /id="create-margin"/)
    t.not(
      (await post({ msp_id: 'cus_m', description: 'Second', percentage: '5' })).statusCode,
      303,
      'one margin per MSP',
    )
    t.equal(count(core, 'discounts'), 1)
    t.match(listEvents(core.db, { actor: op.humanId, reason: 'discount.create' })[0], {
      outcome: 'ok',
    })
    const viewer = seedAdmin(core.db, 'viewer')
    const vc = await csrfFor(app, viewer.cookie, '/admin/customers/cus_m')
    const vres = await app.inject({
      method: 'POST',
      url: '/admin/discounts',
      headers: { cookie: vc.cookie },
      payload: { msp_id: 'cus_m', description: 'x', percentage: '1', _csrf: vc.token },
    })
    t.equal(vres.statusCode, 403)
  },
)

t.test('a viewer can still log out', async (t) => {
  const { app, core } = await setup(t)
  const viewer = seedAdmin(core.db, 'viewer')
  const c = await csrfFor(app, viewer.cookie)
  const res = await app.inject({
    method: 'POST',
    url: '/admin/logout',
    headers: { cookie: c.cookie },
    payload: { _csrf: c.token },
  })
  t.equal(res.statusCode, 303)
  t.equal(
    (await app.inject({ url: '/admin', headers: { cookie: viewer.cookie } })).headers.location,
    '/admin/login',
  )
})
