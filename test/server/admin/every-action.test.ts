// Every action route of the admin UI, found from the app's own route table (so a new one
// cannot be missed): without a CSRF token it is refused for an owner; with one, a viewer
// is refused (except the self-service routes: logout and the viewer's own API tokens);
// nothing is written either way. Success and scope refusals are in the per-page tests.
import { join } from 'node:path'
import t from 'tap'
import { listEvents } from '../../../lib/audit/log.js'
import { adminApp, csrfFor, seedAdmin } from '../../fixtures/admin.js'
import { IDS, seedTwoMsps } from '../../fixtures/scoped.js'

process.env.CLAVITOR_PROTECTION = 'off'

t.test('every POST: CSRF refused, a viewer refused, nothing written', async (t) => {
  const { core, app } = await adminApp(t)
  // the route tree fastify prints: each line a segment, its depth by its indent
  const routes: string[] = []
  const stack: string[] = []
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^((?:│   |    )*)(?:├── |└── )(\S+) \(([^)]*)\)/.exec(line)
    if (!m) continue
    const depth = m[1]!.length / 4
    stack.length = depth
    stack.push(m[2]!)
    if (m[3]!.split(', ').includes('POST')) routes.push(stack.join(''))
  }
  // the admin UI's actions (not its JSON API, nor the WebAuthn ceremony calls):
  const actions = routes.filter(
    (r) =>
      r.startsWith('/admin/') &&
      !r.startsWith('/admin/api/') &&
      !/^\/admin\/(login|setup)\//.test(r),
  )
  t.ok(actions.length >= 20, `found the admin actions (${actions.length}): ${actions.join(' ')}`)
  const fill = (r: string) =>
    r
      .replace('/customers/:id', `/customers/${IDS.a1}`)
      .replace('/transactions/:id', '/transactions/txn_a1')
      .replace('/subscriptions/:id', '/subscriptions/sub_a1')
      .replace('/discounts/:id', '/discounts/dsc_a')
      .replace(':id', 'x')
  const selfService = new Set(['/admin/logout', '/admin/tokens', '/admin/tokens/:id/revoke'])
  const owner = seedAdmin(core.db, 'owner', 'Ada')
  const viewer = seedAdmin(core.db, 'viewer', 'Vic')
  const count = () =>
    [
      'customers',
      'vaults',
      'vault_api_keys',
      'discounts',
      'subscriptions',
      'adjustments',
      'pops',
      'setup_tokens',
    ]
      .map((x) => core.db.prepare(`SELECT count(*) FROM ${x}`).pluck().get())
      .join(',')
  const before = count()
  for (const r of actions) {
    const url = fill(r)
    const noCsrf = await app.inject({
      method: 'POST',
      url,
      headers: { cookie: owner.cookie },
      payload: {},
    })
    t.equal(noCsrf.statusCode, 403, `${r}: no CSRF token`)
    if (selfService.has(r)) continue
    const c = await csrfFor(app, viewer.cookie, '/admin')
    const res = await app.inject({
      method: 'POST',
      url,
      headers: { cookie: c.cookie },
      payload: { _csrf: c.token },
    })
    t.equal(res.statusCode, 403, `${r}: a viewer`)
  }
  t.equal(count(), before, 'nothing written')
  const refused = listEvents(core.db, { actor: viewer.humanId, outcome: 'refused' })
  t.ok(refused.length >= actions.length - selfService.size, "each viewer's attempt is audited")
})
