// Regression (issue 11, item 3): behind the TLS proxy that docs/operations.md prescribes,
// the core must see each client's own address and scheme: the admin cookies get `Secure`,
// every client has its own login rate-limit bucket, audit rows name the client. Without
// --trust-proxy nothing a client sends in X-Forwarded-* is believed.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { openCore } from '../../lib/core.js'
import { listEvents } from '../../lib/audit/log.js'
import type { TrustProxy } from '../../lib/auth/trust-proxy.js'
import { buildCoreApp } from '../../server/app.js'
import { csrfFor } from '../fixtures/admin.js'

process.env.CLAVITOR_PROTECTION = 'off'

async function setup(t: Test, trustProxy: TrustProxy) {
  const dir = mkdtempSync(join(tmpdir(), 'clavitor-proxy-'))
  const core = await openCore({ dataDir: dir })
  const app = await buildCoreApp({
    core,
    trustProxy,
    admin: { secret: 'x'.repeat(43), onSetupUrl: () => {}, authRateLimitMax: 4 },
  })
  t.teardown(async () => {
    await app.close()
    await core.close()
    spawnSync('chattr', ['-R', '-i', '-a', dir])
    rmSync(dir, { recursive: true, force: true })
  })
  return { core, app }
}

// inject() connects from 127.0.0.1: the proxy's address in these tests.
const fromProxy = (client: string) => ({
  'x-forwarded-for': client,
  'x-forwarded-proto': 'https',
  'x-forwarded-host': 'admin.example.com',
})

t.test('trusted proxy: Secure cookies, the client address in audit rows', async (t) => {
  const { app, core } = await setup(t, ['127.0.0.1'])
  const page = await app.inject({
    method: 'GET',
    url: '/admin/login',
    headers: fromProxy('203.0.113.5'),
  })
  t.equal(page.statusCode, 200)
  const csrf = page.cookies.find((c) => c.name === 'clavitor_csrf')
  t.ok(csrf, 'the login page sets the CSRF cookie')
  t.equal(csrf?.secure, true, 'Secure: the client spoke https to the proxy')

  const { token, cookie } = await csrfFor(app, '', '/admin/login')
  const headers = { ...fromProxy('203.0.113.5'), cookie, 'x-csrf-token': token }
  const opts = await app.inject({
    method: 'POST',
    url: '/admin/login/options',
    headers,
    payload: {},
  })
  const { ceremonyId } = opts.json() as { ceremonyId: string }
  const res = await app.inject({
    method: 'POST',
    url: '/admin/login/verify',
    headers,
    payload: { ceremonyId, response: { id: 'a-key-nobody-enrolled' } },
  })
  t.equal(res.statusCode >= 400, true, 'a bogus login is refused')
  const row = listEvents(core.db, { limit: 5 }).find((e) => e.kind === 'admin.auth')
  t.equal(row?.ip, '203.0.113.5', 'the refusal is audited with the client address, not the proxy')
})

t.test('trusted proxy: one rate-limit bucket per client, not one for all', async (t) => {
  const { app } = await setup(t, ['loopback'])
  const get = (client: string) =>
    app.inject({ method: 'GET', url: '/admin/login', headers: fromProxy(client) })
  for (let i = 0; i < 4; i++) t.equal((await get('198.51.100.1')).statusCode, 200)
  t.equal((await get('198.51.100.1')).statusCode, 429, 'the 5th from one client is limited')
  t.equal((await get('198.51.100.2')).statusCode, 200, 'another client behind the proxy is not')
})

t.test('no trusted proxy: forwarded headers are not believed', async (t) => {
  const { app } = await setup(t, false)
  const page = await app.inject({
    method: 'GET',
    url: '/admin/login',
    headers: fromProxy('203.0.113.5'),
  })
  t.not(
    page.cookies.find((c) => c.name === 'clavitor_csrf')?.secure,
    true,
    'no Secure on plain http',
  )
  for (let i = 0; i < 3; i++)
    await app.inject({ method: 'GET', url: '/admin/login', headers: fromProxy(`192.0.2.${i}`) })
  const res = await app.inject({
    method: 'GET',
    url: '/admin/login',
    headers: fromProxy('192.0.2.99'),
  })
  t.equal(res.statusCode, 429, 'a forged X-Forwarded-For does not buy a fresh bucket')
})
