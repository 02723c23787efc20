// The JSON admin API (/admin/api/v1) and the scope rules through HTTP: an admin of MSP A,
// through every page, list, count and API route, cannot read or change MSP B's objects;
// tokens are made on the tokens page, shown once, act as their admin, and stop at revoke
// or when the admin is disabled.
import t, { type Test } from 'tap'
import { ADMIN_API_ROUTES } from '../../../server/admin/api-schemas.js'
import { adminApp, csrfFor, seedAdmin } from '../../fixtures/admin.js'
import { IDS, seedTwoMsps } from '../../fixtures/scoped.js'

process.env.CLAVITOR_PROTECTION = 'off'

async function setup(t: Test, rateLimitMax = 1000) {
  const { core, app } = await adminApp(t, { adminApi: { rateLimitMax } })
  const seeded = seedTwoMsps(core)
  /** An admin with a session and an API token. */
  const admin = (role: 'owner' | 'operator' | 'viewer', scope: string | null) => {
    const s = seedAdmin(core.db, role, undefined, scope)
    const actor = { humanId: s.humanId, name: s.humanId, role, scope }
    const { token } = core.admin.createApiToken(actor, 'tests')
    return { ...s, actor, token }
  }
  const api = (token: string | undefined, method: 'GET' | 'POST', url: string, body?: unknown) =>
    app.inject({
      method,
      url: `/admin/api/v1${url}`,
      headers: token ? { authorization: `Bearer ${token}` } : {},
      ...(body !== undefined ? { payload: body as Record<string, unknown> } : {}),
    })
  return { core, app, seeded, admin, api }
}

const urlOf = (url: string, ids: Record<string, string>) => url.replace(':id', ids[url] ?? 'x')

t.test('no token, a malformed, unknown, revoked token, a disabled admin: 401', async (t) => {
  const { core, admin, api } = await setup(t)
  const a = admin('owner', null)
  for (const token of [undefined, 'nope', `cla_adm_${'0'.repeat(16)}_${'A'.repeat(43)}`]) {
    for (const route of ADMIN_API_ROUTES) {
      const res = await api(
        token,
        route.method,
        urlOf(route.url, {}),
        route.method === 'POST' ? {} : undefined,
      )
      t.equal(res.statusCode, 401, `${route.method} ${route.url} without a valid token`)
      t.equal(res.json().error.code, 'CLA_ERR_ADMIN_UNAUTHENTICATED')
    }
  }
  t.equal((await api(a.token, 'GET', '/me')).statusCode, 200)
  const id = core.admin.listApiTokens(a.actor)[0]!.id
  core.admin.revokeApiToken(a.actor, id)
  t.equal((await api(a.token, 'GET', '/me')).statusCode, 401, 'revoked')
  const b = admin('operator', null)
  t.equal((await api(b.token, 'GET', '/me')).statusCode, 200)
  core.admin.disable('system', b.actor.humanId)
  t.equal((await api(b.token, 'GET', '/me')).statusCode, 401, 'its admin disabled')
  const wrong = b.token.slice(0, -4) + 'AAAA'
  t.equal((await api(wrong, 'GET', '/me')).statusCode, 401, 'a wrong secret')
})

t.test('an MSP admin through every API route: B is out of reach, A works', async (t) => {
  const { core, seeded: s, admin, api } = await setup(t)
  const a = admin('owner', IDS.mspA)
  t.match((await api(a.token, 'GET', '/me')).json(), {
    humanId: a.actor.humanId,
    role: 'owner',
    scope: IDS.mspA,
  })

  // lists and counts hold only A's
  const list = async (url: string) =>
    ((await api(a.token, 'GET', url)).json() as { rows: Array<{ id: string }> }).rows.map(
      (r) => r.id,
    )
  t.same(await list('/subscriptions'), [s.subA1])
  t.same(await list('/subscriptions?status=canceled'), [], 'filtered by status')
  t.same(await list(`/subscriptions?customer=${IDS.a1}&status=active`), [s.subA1])
  t.same(await list(`/subscriptions?customer=${IDS.b1}`), [], 'a filter never widens the scope')
  t.same(
    ((await api(a.token, 'GET', '/customers?q=bravo')).json() as unknown[]).length,
    0,
    'search stays in the scope',
  )
  t.match((await api(a.token, 'GET', '/customers?q=alpha one')).json(), [{ id: IDS.a1 }])
  t.same(await list('/transactions'), [s.txnA1])
  t.same(await list('/vaults'), [s.vaultA1])
  t.same(await list('/discounts'), ['dsc_a'])
  t.same(
    ((await api(a.token, 'GET', '/customers')).json() as Array<{ id: string }>).map((c) => c.id),
    [IDS.mspA],
  )
  t.match((await api(a.token, 'GET', '/dashboard')).json(), {
    facts: {
      customers: { msp: 1, customer: 1 },
      subscriptions: { total: 1 },
      vaults: 1,
      pops: null,
    },
    installation: null,
  })
  const admins = (await api(a.token, 'GET', '/admins')).json() as Array<{ id: string }>
  t.same(
    admins.map((x) => x.id),
    [a.actor.humanId],
  )

  // every route that names B's objects, or the installation, is refused
  const refused: Array<['GET' | 'POST', string, unknown?]> = [
    ['GET', `/customers/${IDS.mspB}`],
    ['GET', `/customers/${IDS.b1}`],
    ['POST', '/customers', { parent_id: IDS.b1, name: 'x', email: 'x@example.com' }],
    ['POST', '/customers', { name: 'New MSP', email: 'n@example.com' }],
    ['POST', `/customers/${IDS.b1}`, { name: 'Renamed' }],
    ['POST', `/customers/${IDS.b1}/move`, { parent_id: IDS.mspA }],
    ['POST', `/customers/${IDS.a1}/move`, { parent_id: IDS.mspB }],
    ['POST', `/customers/${IDS.b1}/archive`, {}],
    ['GET', `/transactions/${s.txnB1}`],
    ['POST', `/transactions/${s.txnB1}/adjustments`, { action: 'refund', reason: 'x' }],
    ['POST', '/discounts/dsc_a', { description: 'mine now' }],
    ['POST', '/discounts/dsc_b/archive', {}],
    ['GET', `/subscriptions/${s.subB1}`],
    ['POST', '/subscriptions', { customer_id: IDS.b1 }],
    ['POST', `/subscriptions/${s.subB1}/actions`, { action: 'resume' }],
    ['POST', `/subscriptions/${s.subB1}/retry`, {}],
    ['GET', `/vaults/${s.vaultB1}`],
    ['POST', '/vaults', { customer_id: IDS.b1, name: 'x' }],
    ['POST', `/vaults/${s.vaultB1}/keys`, {}],
    ['POST', `/vault-keys/${s.keyB1}/revoke`, {}],
    ['POST', '/discounts', { msp_id: IDS.mspA, description: 'more', percentage: '50' }],
    ['GET', '/pops'],
    ['POST', '/pops', { id: 'pop-x', cert_pem: 'x', allowlist: ['10.0.0.1'] }],
    ['POST', '/pops/pop-x/remove', {}],
    ['POST', '/pops/pop-x/revoke', {}],
    ['POST', '/admins/invites', { role: 'viewer', scope: IDS.mspB }],
    ['POST', '/admins/invites', { role: 'viewer', scope: null }],
  ]
  for (const [method, url, body] of refused) {
    const res = await api(a.token, method, url, body)
    t.equal(res.statusCode, 403, `${method} ${url}`)
    t.equal(res.json().error.code, 'CLA_ERR_ADMIN_SCOPE', `${method} ${url}: scope`)
  }
  t.equal(core.credentials.getApiKey(s.keyB1)!.revoked_at, null)
  t.equal(core.credentials.listVaults({ customerId: IDS.b1 }).length, 1, 'no vault made for B')

  // within A: a vault, a key that works, a scoped invite
  const v = await api(a.token, 'POST', '/vaults', { customer_id: IDS.a1, name: 'New' })
  t.equal(v.statusCode, 201)
  const k = await api(a.token, 'POST', `/vaults/${v.json().id}/keys`, {})
  t.equal(k.statusCode, 201)
  t.equal(core.credentials.authenticateVaultKey(k.json().key).vaultId, v.json().id)
  t.equal((await api(a.token, 'GET', `/vaults/${v.json().id}`)).json().keys.length, 1)
  const inv = await api(a.token, 'POST', '/admins/invites', { role: 'operator', scope: IDS.a1 })
  t.equal(inv.statusCode, 201)
  t.match(inv.json(), { role: 'operator', scope: IDS.a1 })
})

t.test('roles through the API; input validated by the schemas', async (t) => {
  const { seeded: s, admin, api } = await setup(t)
  const viewer = admin('viewer', IDS.mspA)
  t.equal((await api(viewer.token, 'GET', '/vaults')).statusCode, 200)
  for (const [url, body] of [
    ['/vaults', { customer_id: IDS.a1, name: 'x' }],
    [`/vaults/${s.vaultA1}/keys`, {}],
    [`/vault-keys/${s.keyA1}/revoke`, {}],
  ] as const) {
    const res = await api(viewer.token, 'POST', url, body)
    t.equal(res.statusCode, 403, url)
    t.equal(res.json().error.code, 'CLA_ERR_ADMIN_FORBIDDEN')
  }
  const owner = admin('owner', null)
  const bad = await api(owner.token, 'POST', '/vaults', { name: 'x' })
  t.equal(bad.statusCode, 400)
  t.match(bad.json().error, { code: 'CLA_ERR_INVALID_INPUT', message: /customer_id/ })
  const q = await api(owner.token, 'GET', '/vaults?limit=0')
  t.equal(q.statusCode, 400)
  t.equal((await api(owner.token, 'GET', '/pops')).statusCode, 200, 'the installation owner')
  t.equal((await api(owner.token, 'GET', '/vaults?limit=1')).json().rows.length, 1)
})

t.test('pages: an MSP admin sees and changes only its subtree', async (t) => {
  const { app, seeded: s, admin } = await setup(t)
  const a = admin('owner', IDS.mspA)
  const get = (url: string) => app.inject({ method: 'GET', url, headers: { cookie: a.cookie } })
  for (const url of [
    `/admin/customers/${IDS.mspB}`,
    `/admin/customers/${IDS.b1}`,
    '/admin/pops',
    '/admin/events',
  ]) {
    const res = await get(url)
    t.equal(res.statusCode, 403, url)
    t.match(res.body, /outside your scope|installation-wide admins only/)
  }
  for (const url of [
    '/admin',
    '/admin/customers',
    '/admin/subscriptions',
    '/admin/transactions',
    '/admin/vaults',
    '/admin/discounts',
    '/admin/admins',
  ]) {
    const res = await get(url)
    t.equal(res.statusCode, 200, url)
    for (const other of [
      IDS.mspB,
      IDS.b1,
      'MSP Bravo',
      'Bravo One',
      s.subB1,
      s.txnB1,
      s.vaultB1,
      'dsc_b',
    ])
      t.notOk(res.body.includes(other), `${url} does not show ${other}`)
  }
  t.notMatch((await get('/admin')).body, /href="\/admin\/pops"/, 'no POPs link in the nav')
  t.match((await get(`/admin/customers/${IDS.a1}`)).body, /Alpha One/)

  // a form POST naming B's customer: refused
  const c = await csrfFor(app, a.cookie, '/admin/customers')
  const res = await app.inject({
    method: 'POST',
    url: '/admin/customers',
    headers: { cookie: c.cookie },
    payload: { _csrf: c.token, parent_id: IDS.b1, name: 'Intruder', email: 'i@example.com' },
  })
  t.equal(res.statusCode, 403)
})

t.test('the tokens page: made, shown once, used, revoked', async (t) => {
  const { app, admin, api } = await setup(t)
  const v = admin('viewer', IDS.mspA)
  const c = await csrfFor(app, v.cookie, '/admin/tokens')
  const made = await app.inject({
    method: 'POST',
    url: '/admin/tokens',
    headers: { cookie: c.cookie },
    payload: { _csrf: c.token, name: 'ci robot' },
  })
  t.equal(made.statusCode, 200, 'a viewer may hold a token (it carries only what they hold)')
  const token = /<code id="api-token">([^<]+)<\/code>/.exec(made.body)?.[1]
  t.ok(token, 'shown once on the page')
  t.match((await api(token, 'GET', '/me')).json(), { role: 'viewer', scope: IDS.mspA })
  const list = await app.inject({
    method: 'GET',
    url: '/admin/tokens',
    headers: { cookie: v.cookie },
  })
  t.notOk(list.body.includes(token!), 'never shown again')
  const id = /action="\/admin\/tokens\/(tok_[0-9a-f]+)\/revoke"/.exec(list.body)?.[1]
  const c2 = await csrfFor(app, v.cookie, '/admin/tokens')
  const revoked = await app.inject({
    method: 'POST',
    url: `/admin/tokens/${id}/revoke`,
    headers: { cookie: c2.cookie },
    payload: { _csrf: c2.token },
  })
  t.equal(revoked.statusCode, 303)
  t.equal((await api(token, 'GET', '/me')).statusCode, 401)
  const noCsrf = await app.inject({
    method: 'POST',
    url: '/admin/tokens',
    headers: { cookie: v.cookie },
    payload: { name: 'x' },
  })
  t.equal(noCsrf.statusCode, 403, 'CSRF refused')
})

t.test(
  'rate limit per token: 429 with Retry-After; another token has its own budget',
  async (t) => {
    const { admin, api } = await setup(t, 3)
    const a = admin('viewer', null)
    const b = admin('viewer', null)
    for (let i = 0; i < 3; i++) t.equal((await api(a.token, 'GET', '/me')).statusCode, 200)
    const over = await api(a.token, 'GET', '/me')
    t.equal(over.statusCode, 429)
    t.equal(over.json().error.code, 'CLA_ERR_ADMIN_RATE_LIMITED')
    t.ok(Number(over.headers['retry-after']) > 0, 'Retry-After')
    t.equal((await api(b.token, 'GET', '/me')).statusCode, 200, "b's budget is its own")
  },
)

t.test('at most 20 live tokens per admin; a revoked one frees a place', async (t) => {
  const { core, admin } = await setup(t)
  const a = admin('viewer', null) // holds one already
  for (let i = 1; i < 20; i++) core.admin.createApiToken(a.actor, `t${i}`)
  t.throws(() => core.admin.createApiToken(a.actor, 'one more'), {
    code: 'CLA_ERR_INVALID_INPUT',
    message: /20 live API tokens/,
  })
  core.admin.revokeApiToken(a.actor, core.admin.listApiTokens(a.actor)[0]!.id)
  t.ok(core.admin.createApiToken(a.actor, 'one more').token.startsWith('cla_adm_'))
  t.throws(() => core.admin.createApiToken(a.actor, '<bad name>'), {
    code: 'CLA_ERR_INVALID_INPUT',
  })
})
