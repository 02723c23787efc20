// The credentials API through the core's real app (buildCoreApp over openCore): real
// SQLite, real WORM store (protection best-effort, sealed for real on ext4 as root),
// Fastify inject. Every refused request is checked to change nothing.
import t from 'tap'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { openCore, type Core } from '../../lib/core.js'
import { nowMicros } from '../../lib/db/open.js'
import { encodeCursor } from '../../lib/store/cursor.js'
import { recordReport } from '../../lib/core-sync/pop-state.js'
import { buildCoreApp, type CoreAppOptions } from '../../server/app.js'
import { buildOpenApi } from '../../server/openapi.js'
import { listEvents } from '../../lib/audit/log.js'
import { clearFlags, p0Of } from '../fixtures/credentials.js'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')
const b64 = (b: Buffer | string) => Buffer.from(b).toString('base64')

interface Env {
  core: Core
  app: FastifyInstance
  acmeKey: string
  acmeKey2: string
  revokedKey: string
  rivalKey: string
  lateKey: string
  nosubKey: string
  counts(): Record<string, number>
}

async function setup(
  tt: { teardown(fn: () => unknown): void },
  appOpts: Partial<CoreAppOptions> = {},
): Promise<Env> {
  const dir = mkdtempSync(join(tmpdir(), 'clavitor-credapi-'))
  const core = await openCore({ dataDir: dir, protection: 'best-effort' })
  const app = await buildCoreApp({ core, admin: { onSetupUrl: () => {} }, ...appOpts })
  tt.teardown(async () => {
    await app.close()
    await core.close()
    clearFlags(dir)
    rmSync(dir, { recursive: true, force: true })
  })
  const now = nowMicros()
  const cust = core.db.prepare(
    'INSERT INTO customers (id, parent_id, level, email, created_at, updated_at) VALUES (?, NULL, 1, ?, ?, ?)',
  )
  const sub = core.db.prepare(
    "INSERT INTO subscriptions (id, customer_id, status, currency_code, created_at, updated_at) VALUES (?, ?, ?, 'EUR', ?, ?)",
  )
  for (const c of ['acme', 'rival']) cust.run(c, `${c}@x.test`, now, now)
  sub.run('sub_acme', 'acme', 'active', now, now)
  sub.run('sub_rival', 'rival', 'active', now, now)
  sub.run('sub_late', 'acme', 'past_due', now, now)
  const cr = core.credentials
  const acme = cr.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'acme' })
  const rival = cr.createVault({ customerId: 'rival', subscriptionId: 'sub_rival', name: 'rival' })
  const late = cr.createVault({
    customerId: 'acme',
    subscriptionId: 'sub_late',
    name: 'late payer',
  })
  const nosub = cr.createVault({ customerId: 'acme', name: 'no subscription' })
  const revoked = cr.createApiKey(acme.id)
  cr.revokeApiKey(revoked.id)
  const one = (sql: string) => (core.db.prepare(sql).get() as { n: number }).n
  return {
    core,
    app,
    acmeKey: cr.createApiKey(acme.id).key,
    acmeKey2: cr.createApiKey(acme.id).key,
    revokedKey: revoked.key,
    rivalKey: cr.createApiKey(rival.id).key,
    lateKey: cr.createApiKey(late.id).key,
    nosubKey: cr.createApiKey(nosub.id).key,
    counts: () => ({
      credentials: one('SELECT COUNT(*) AS n FROM credentials'),
      blobs: one('SELECT COUNT(*) AS n FROM blobs'),
      files: core.store.status().blobs,
      // a refused key check is audited (credential.auth); nothing else may change
      events: one("SELECT COUNT(*) AS n FROM events WHERE kind != 'credential.auth'"),
    }),
  }
}

const auth = (key: string) => ({ authorization: `Bearer ${key}` })

function register(
  env: Env,
  key: string | null,
  body: unknown,
  headers: Record<string, string> = {},
) {
  return env.app.inject({
    method: 'POST',
    url: '/api/v1/credentials/register',
    headers: { ...(key ? auth(key) : {}), 'content-type': 'application/json', ...headers },
    payload: typeof body === 'string' ? body : JSON.stringify(body),
  })
}

t.test('register, versions, list, download, sync status', async (t) => {
  const env = await setup(t)
  const p0 = p0Of(1)
  const w1 = Buffer.from('wl3 version one')
  const r1 = await register(env, env.acmeKey, { p0, wl3: b64(w1) })
  t.equal(r1.statusCode, 201, r1.body)
  const j1 = r1.json()
  t.match(j1, { p0, version: 1, sha256: sha(w1), size: w1.length })
  t.same(Object.keys(j1).sort(), [
    'created_at',
    'p0',
    'path',
    'replayed',
    'seq',
    'sha256',
    'size',
    'vault_id',
    'version',
  ])

  const w2 = Buffer.from('wl3 version two, a bit longer')
  const r2 = await register(env, env.acmeKey2, { p0, wl3: b64(w2) })
  t.equal(r2.statusCode, 201)
  t.equal(r2.json().version, 2, 'a new WL3 for a known P0 adds a version')
  await register(env, env.acmeKey, { p0: p0Of(2), wl3: b64('other') })

  const list = await env.app.inject({
    url: '/api/v1/credentials?customer=acme',
    headers: auth(env.acmeKey),
  })
  t.equal(list.statusCode, 200)
  const lj = list.json()
  t.same(
    lj.items.map((i: { p0: string }) => i.p0),
    [p0, p0Of(2)],
  )
  t.match(lj.items[0], { versions: 2, latest: { version: 2, sha256: sha(w2), seq: r2.json().seq } })
  t.equal(lj.next, null)
  const paged = await env.app.inject({
    url: '/api/v1/credentials?customer=acme&limit=1',
    headers: auth(env.acmeKey),
  })
  t.equal(paged.json().next, p0)
  const page2 = await env.app.inject({
    url: `/api/v1/credentials?customer=acme&limit=1&after=${p0}`,
    headers: auth(env.acmeKey),
  })
  t.same(
    page2.json().items.map((i: { p0: string }) => i.p0),
    [p0Of(2)],
  )

  const latest = await env.app.inject({
    url: `/api/v1/credentials/wl3?p0=${p0}`,
    headers: auth(env.acmeKey),
  })
  t.equal(latest.statusCode, 200)
  t.equal(latest.headers['content-type'], 'application/octet-stream')
  t.same(latest.rawPayload, w2, 'the latest WL3, raw bytes')
  t.equal(latest.headers.etag, `"${sha(w2)}"`)
  t.equal(latest.headers['x-clavitor-version'], '2')
  t.equal(latest.headers['x-clavitor-versions'], '2')
  const first = await env.app.inject({
    url: `/api/v1/credentials/wl3?p0=${p0}&version=1`,
    headers: auth(env.acmeKey),
  })
  t.same(first.rawPayload, w1, 'version 1 on request')
  t.equal(first.headers.etag, `"${sha(w1)}"`)
  const cached = await env.app.inject({
    url: `/api/v1/credentials/wl3?p0=${p0}`,
    headers: { ...auth(env.acmeKey), 'if-none-match': `"${sha(w2)}"` },
  })
  t.equal(cached.statusCode, 304)
  t.equal(cached.body, '')

  // sync status reflects a POP's reported cursor
  env.core.db
    .prepare(
      "INSERT INTO pops (id, name, created_at) VALUES ('ams', 'Amsterdam', 1), ('fra', NULL, 1)",
    )
    .run()
  const s1 = r1.json()
  recordReport(env.core.db, 'ams', {
    cursor: encodeCursor({ created_at: s1.created_at, seq: s1.seq }),
    ok: true,
    error: null,
  })
  let sync = await env.app.inject({ url: '/api/v1/credentials/sync', headers: auth(env.acmeKey) })
  t.equal(sync.statusCode, 200)
  t.match(
    sync.json().items[0],
    { p0, version: 2, held_by: [], missing_on: ['ams', 'fra'] },
    'ams holds only version 1',
  )
  const last = env.core.db
    .prepare('SELECT created_at, seq FROM blobs ORDER BY seq DESC LIMIT 1')
    .get() as {
    created_at: number
    seq: number
  }
  recordReport(env.core.db, 'ams', { cursor: encodeCursor(last), ok: true, error: null })
  sync = await env.app.inject({ url: '/api/v1/credentials/sync', headers: auth(env.acmeKey) })
  t.same(
    sync.json().items.map((i: { p0: string; held_by: string[] }) => [i.p0, i.held_by]),
    [
      [p0, ['ams']],
      [p0Of(2), ['ams']],
    ],
  )
  t.match(sync.json().pops[0], { id: 'ams', name: 'Amsterdam', cursor_seq: last.seq })
  const rivalSync = await env.app.inject({
    url: '/api/v1/credentials/sync',
    headers: auth(env.rivalKey),
  })
  t.same(rivalSync.json().items, [], "the rival key sees none of acme's P0s")
})

t.test(
  'Idempotency-Key: a retry answers the first registration, a reused key is refused',
  async (t) => {
    const env = await setup(t)
    const p0 = p0Of(7)
    const body = { p0, wl3: b64(Buffer.from('once')) }
    const key = { 'idempotency-key': '7b0f4c1e-8d1a-4a53-9f55-2c0e2f2b8c11' }
    const r1 = await register(env, env.acmeKey, body, key)
    t.equal(r1.statusCode, 201, r1.body)
    t.equal(r1.headers['idempotent-replayed'], undefined)
    const r2 = await register(env, env.acmeKey, body, key)
    t.equal(r2.statusCode, 201, r2.body)
    t.equal(r2.headers['idempotent-replayed'], 'true')
    t.same(
      { ...r2.json(), replayed: false },
      r1.json(),
      'the first registration, not a new version',
    )
    const r3 = await register(env, env.acmeKey, { p0, wl3: b64(Buffer.from('twice')) }, key)
    t.equal(r3.statusCode, 409, r3.body)
    t.equal(r3.json().error.code, 'CLA_ERR_IDEMPOTENCY_CONFLICT')
    const r4 = await register(env, env.acmeKey, body, { 'idempotency-key': 'ü' })
    t.equal(r4.statusCode, 400, r4.body)
    t.equal(r4.json().error.code, 'CLA_ERR_INVALID_INPUT')
  },
)

t.test('every bad register gets its error and changes nothing', async (t) => {
  const env = await setup(t)
  const taken = await register(env, env.rivalKey, { p0: p0Of(7), wl3: b64('rival') })
  t.equal(taken.statusCode, 201)
  const before = env.counts()
  const good = p0Of(1)
  const wl3 = b64('some wl3')
  const cases: Array<[string, () => ReturnType<typeof register>, number, string]> = [
    [
      'upper-case P0',
      () => register(env, env.acmeKey, { p0: good.replace(/0/g, 'A'), wl3 }),
      400,
      'CLA_ERR_INVALID_P0',
    ],
    [
      'odd-length P0',
      () => register(env, env.acmeKey, { p0: good + 'a', wl3 }),
      400,
      'CLA_ERR_INVALID_P0',
    ],
    [
      'too-short P0',
      () => register(env, env.acmeKey, { p0: 'abcdef', wl3 }),
      400,
      'CLA_ERR_INVALID_P0',
    ],
    [
      'P0 with ..',
      () => register(env, env.acmeKey, { p0: '..' + good.slice(2), wl3 }),
      400,
      'CLA_ERR_INVALID_P0',
    ],
    [
      'P0 not a string',
      () => register(env, env.acmeKey, { p0: 12, wl3 }),
      400,
      'CLA_ERR_INVALID_P0',
    ],
    // Regression (issue 11, item 7): Fastify's default Ajv coerced these into strings.
    [
      'P0 as a one-element array',
      () => register(env, env.acmeKey, { p0: [good], wl3 }),
      400,
      'CLA_ERR_INVALID_P0',
    ],
    [
      'WL3 as a number',
      () => register(env, env.acmeKey, { p0: good, wl3: 1234 }),
      400,
      'CLA_ERR_INVALID_INPUT',
    ],
    [
      'WL3 as a boolean',
      () => register(env, env.acmeKey, { p0: good, wl3: true }),
      400,
      'CLA_ERR_INVALID_INPUT',
    ],
    ['missing P0', () => register(env, env.acmeKey, { wl3 }), 400, 'CLA_ERR_INVALID_INPUT'],
    ['missing WL3', () => register(env, env.acmeKey, { p0: good }), 400, 'CLA_ERR_INVALID_INPUT'],
    [
      'WL3 not base64',
      () => register(env, env.acmeKey, { p0: good, wl3: 'not*base64!' }),
      400,
      'CLA_ERR_INVALID_INPUT',
    ],
    [
      'empty WL3',
      () => register(env, env.acmeKey, { p0: good, wl3: '' }),
      400,
      'CLA_ERR_INVALID_INPUT',
    ],
    [
      'WL3 one byte over 64 KiB',
      () => register(env, env.acmeKey, { p0: good, wl3: b64(Buffer.alloc(65537, 7)) }),
      413,
      'CLA_ERR_PAYLOAD_TOO_LARGE',
    ],
    [
      'WL3 far over the limit',
      () => register(env, env.acmeKey, { p0: good, wl3: b64(Buffer.alloc(200_000, 7)) }),
      413,
      'CLA_ERR_PAYLOAD_TOO_LARGE',
    ],
    [
      'body over the body limit',
      () => register(env, env.acmeKey, { p0: good, wl3: b64(Buffer.alloc(2_000_000, 7)) }),
      413,
      'CLA_ERR_PAYLOAD_TOO_LARGE',
    ],
    [
      'text body',
      () => register(env, env.acmeKey, `p0=${good}`, { 'content-type': 'text/plain' }),
      400,
      'CLA_ERR_INVALID_INPUT',
    ],
    [
      'malformed JSON',
      () => register(env, env.acmeKey, '{"p0": "' + good + '", wl3'),
      400,
      'CLA_ERR_INVALID_INPUT',
    ],
    ['empty JSON body', () => register(env, env.acmeKey, ''), 400, 'CLA_ERR_INVALID_INPUT'],
    ['JSON array body', () => register(env, env.acmeKey, '[]'), 400, 'CLA_ERR_INVALID_INPUT'],
    [
      'XML body',
      () => register(env, env.acmeKey, `<p0>${good}</p0>`, { 'content-type': 'application/xml' }),
      415,
      'CLA_ERR_UNSUPPORTED_MEDIA_TYPE',
    ],
    ['missing key', () => register(env, null, { p0: good, wl3 }), 401, 'CLA_ERR_API_KEY_MISSING'],
    [
      'not a bearer',
      () => register(env, null, { p0: good, wl3 }, { authorization: 'Basic YTpi' }),
      401,
      'CLA_ERR_API_KEY_MISSING',
    ],
    [
      'malformed key',
      () => register(env, 'clv_nonsense', { p0: good, wl3 }),
      401,
      'CLA_ERR_API_KEY_INVALID',
    ],
    [
      'wrong secret',
      () => register(env, env.acmeKey.slice(0, -8) + 'deadbeef', { p0: good, wl3 }),
      401,
      'CLA_ERR_API_KEY_INVALID',
    ],
    [
      'unknown key id',
      () => register(env, `clv_${'1'.repeat(16)}_${'2'.repeat(64)}`, { p0: good, wl3 }),
      401,
      'CLA_ERR_API_KEY_INVALID',
    ],
    [
      'revoked key',
      () => register(env, env.revokedKey, { p0: good, wl3 }),
      401,
      'CLA_ERR_API_KEY_REVOKED',
    ],
    [
      "another customer's P0",
      () => register(env, env.acmeKey, { p0: p0Of(7), wl3 }),
      409,
      'CLA_ERR_CREDENTIAL_P0_TAKEN',
    ],
    [
      'past_due subscription',
      () => register(env, env.lateKey, { p0: good, wl3 }),
      402,
      'CLA_ERR_SUBSCRIPTION_INACTIVE',
    ],
    [
      'no subscription',
      () => register(env, env.nosubKey, { p0: good, wl3 }),
      402,
      'CLA_ERR_SUBSCRIPTION_INACTIVE',
    ],
  ]
  for (const [name, run, status, code] of cases) {
    const res = await run()
    t.equal(res.statusCode, status, `${name}: status (${res.body.slice(0, 200)})`)
    t.equal(res.json().error?.code, code, `${name}: code`)
    t.type(res.json().error?.message, 'string', `${name}: a message`)
    t.same(env.counts(), before, `${name}: nothing changed`)
  }
  env.core.db.prepare("UPDATE subscriptions SET status = 'canceled' WHERE id = 'sub_acme'").run()
  const canceled = await register(env, env.acmeKey, { p0: good, wl3 })
  t.equal(canceled.statusCode, 402)
  t.equal(canceled.json().error.code, 'CLA_ERR_SUBSCRIPTION_INACTIVE')
  t.match(canceled.json().error.details, { status: 'canceled' })
  t.same(env.counts(), before, 'canceled: nothing changed')
  env.core.db.prepare("UPDATE subscriptions SET status = 'trialing' WHERE id = 'sub_acme'").run()
  const ok = await register(env, env.acmeKey, { p0: good, wl3: b64(Buffer.alloc(65536, 1)) })
  t.equal(ok.statusCode, 201, 'trialing, WL3 of exactly 64 KiB is accepted')
})

// Issue 11, item 1: the P0 of the audit anchors (64 zeros) is the core's own; a vault that
// could place a file there made `audit verify` fail and stopped the anchor writer.
t.test(
  'the reserved audit-anchor P0: register and download refuse it, nothing changes',
  async (t) => {
    const env = await setup(t)
    const anchorP0 = '0'.repeat(64)
    await env.core.store.put(anchorP0, Buffer.from('an anchor the core wrote'))
    const before = env.counts()
    const reg = await register(env, env.acmeKey, { p0: anchorP0, wl3: b64('forged anchor') })
    t.equal(reg.statusCode, 400, reg.body)
    t.equal(reg.json().error.code, 'CLA_ERR_P0_RESERVED')
    t.match(reg.json().error.message, /reserved for the core's own records \(audit anchors\)/)
    t.match(reg.json().error.details, { field: 'p0' })
    const get = await env.app.inject({
      url: `/api/v1/credentials/wl3?p0=${anchorP0}`,
      headers: auth(env.acmeKey),
    })
    t.equal(get.statusCode, 400, get.body)
    t.equal(get.json().error.code, 'CLA_ERR_P0_RESERVED')
    t.same(env.counts(), before, 'nothing changed')
    const other = await register(env, env.acmeKey, { p0: '0'.repeat(62) + '01', wl3: b64('ok') })
    t.equal(other.statusCode, 201, 'a P0 next to it is an ordinary P0')
  },
)

t.test('reads: customer scoping, bad queries, unknown P0s', async (t) => {
  const env = await setup(t)
  await register(env, env.acmeKey, { p0: p0Of(1), wl3: b64('acme wl3') })
  const before = env.counts()
  const get = (url: string, key: string | null = env.acmeKey) =>
    env.app.inject({ url, headers: key ? auth(key) : {} })
  const cases: Array<[string, string, string | null, number, string]> = [
    [
      "another customer's list",
      '/api/v1/credentials?customer=acme',
      env.rivalKey,
      403,
      'CLA_ERR_CREDENTIAL_FORBIDDEN',
    ],
    [
      'list of another customer',
      '/api/v1/credentials?customer=rival',
      env.acmeKey,
      403,
      'CLA_ERR_CREDENTIAL_FORBIDDEN',
    ],
    ['list without customer', '/api/v1/credentials', env.acmeKey, 400, 'CLA_ERR_INVALID_INPUT'],
    [
      'list limit 0',
      '/api/v1/credentials?customer=acme&limit=0',
      env.acmeKey,
      400,
      'CLA_ERR_INVALID_INPUT',
    ],
    [
      'list limit huge',
      '/api/v1/credentials?customer=acme&limit=100000',
      env.acmeKey,
      400,
      'CLA_ERR_INVALID_INPUT',
    ],
    ['list without key', '/api/v1/credentials?customer=acme', null, 401, 'CLA_ERR_API_KEY_MISSING'],
    [
      'list with revoked key',
      '/api/v1/credentials?customer=acme',
      env.revokedKey,
      401,
      'CLA_ERR_API_KEY_REVOKED',
    ],
    [
      "another customer's WL3",
      `/api/v1/credentials/wl3?p0=${p0Of(1)}`,
      env.rivalKey,
      404,
      'CLA_ERR_NOT_FOUND',
    ],
    ['unknown P0', `/api/v1/credentials/wl3?p0=${p0Of(2)}`, env.acmeKey, 404, 'CLA_ERR_NOT_FOUND'],
    ['bad P0', '/api/v1/credentials/wl3?p0=ABC', env.acmeKey, 400, 'CLA_ERR_INVALID_P0'],
    [
      'P0 traversal',
      `/api/v1/credentials/wl3?p0=..%2F${p0Of(1)}`,
      env.acmeKey,
      400,
      'CLA_ERR_INVALID_P0',
    ],
    ['no P0', '/api/v1/credentials/wl3', env.acmeKey, 400, 'CLA_ERR_INVALID_INPUT'],
    [
      'version 0',
      `/api/v1/credentials/wl3?p0=${p0Of(1)}&version=0`,
      env.acmeKey,
      400,
      'CLA_ERR_INVALID_INPUT',
    ],
    [
      'version not a number',
      `/api/v1/credentials/wl3?p0=${p0Of(1)}&version=x`,
      env.acmeKey,
      400,
      'CLA_ERR_INVALID_INPUT',
    ],
    [
      'version past the last',
      `/api/v1/credentials/wl3?p0=${p0Of(1)}&version=2`,
      env.acmeKey,
      404,
      'CLA_ERR_NOT_FOUND',
    ],
    [
      'WL3 without key',
      `/api/v1/credentials/wl3?p0=${p0Of(1)}`,
      null,
      401,
      'CLA_ERR_API_KEY_MISSING',
    ],
    [
      'sync with a wrong key',
      '/api/v1/credentials/sync',
      env.acmeKey.slice(0, -1) + 'x',
      401,
      'CLA_ERR_API_KEY_INVALID',
    ],
    [
      'sync bad after',
      '/api/v1/credentials/sync?after=ZZ',
      env.acmeKey,
      400,
      'CLA_ERR_INVALID_INPUT',
    ],
  ]
  for (const [name, url, key, status, code] of cases) {
    const res = await get(url, key)
    t.equal(res.statusCode, status, `${name}: status (${res.body.slice(0, 200)})`)
    t.equal(res.json().error?.code, code, `${name}: code`)
  }
  t.same(env.counts(), before, 'reads and refusals changed nothing')
})

t.test('rate limit: per API key, 429 with Retry-After and a stable code', async (t) => {
  const env = await setup(t, { credentials: { rateLimitMax: 3, rateLimitWindowMs: 60_000 } })
  const list = (key: string) =>
    env.app.inject({ url: '/api/v1/credentials?customer=acme', headers: auth(key) })
  for (let i = 0; i < 3; i++) t.equal((await list(env.acmeKey)).statusCode, 200)
  const limited = await list(env.acmeKey)
  t.equal(limited.statusCode, 429)
  t.equal(limited.json().error.code, 'CLA_ERR_CREDENTIAL_RATE_LIMITED')
  t.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After in seconds')
  t.equal(
    (await list(env.acmeKey2)).statusCode,
    200,
    'another key of the same vault has its own budget',
  )
  // Wrong secrets for a key id spend the client's IP budget, not the key's.
  const bad = env.acmeKey2.slice(0, -8) + '00000000'
  for (let i = 0; i < 3; i++) t.equal((await list(bad)).statusCode, 401)
  t.equal((await list(env.acmeKey2)).statusCode, 200, 'wrong secrets did not spend the key')
})

// Regression (issue 11, item 6): the per-key bucket was keyed on the id of the presented
// key before its secret was checked, so whoever knew a key id (audit rows, admin UI) could
// lock the vault out, and random ids each got a fresh bucket past the per-IP limit.
t.test('rate limit: a stranger who knows a key id cannot spend its budget', async (t) => {
  const env = await setup(t, { credentials: { rateLimitMax: 3, ipRateLimitMax: 1000 } })
  const list = (key: string, ip = '127.0.0.1') =>
    env.app.inject({
      url: '/api/v1/credentials?customer=acme',
      headers: auth(key),
      remoteAddress: ip,
    })
  const forged = env.acmeKey.slice(0, -8) + 'ffffffff'
  for (let i = 0; i < 10; i++) t.equal((await list(forged, '192.0.2.66')).statusCode, 401)
  t.equal((await list(env.acmeKey)).statusCode, 200, 'the real key still has its budget')
})

t.test('rate limit: random key ids do not bypass the per-IP limit', async (t) => {
  const env = await setup(t, { credentials: { rateLimitMax: 100, ipRateLimitMax: 5 } })
  const codes: number[] = []
  for (let i = 0; i < 7; i++) {
    const key = `clv_${i.toString(16).padStart(16, '0')}_${'0'.repeat(64)}`
    const res = await env.app.inject({
      url: '/api/v1/credentials?customer=acme',
      headers: auth(key),
      remoteAddress: '192.0.2.77',
    })
    codes.push(res.statusCode)
  }
  t.same(codes, [401, 401, 401, 401, 401, 429, 429], 'the sixth guess from one address is limited')
  const other = await env.app.inject({
    url: '/api/v1/credentials?customer=acme',
    headers: auth(env.acmeKey),
    remoteAddress: '192.0.2.78',
  })
  t.equal(other.statusCode, 200, 'another address is not')
})

t.test('failed key checks are audited and counted', async (t) => {
  const env = await setup(t)
  const forged = env.acmeKey.slice(0, -8) + 'ffffffff'
  const id = /^clv_([0-9a-f]{16})_/.exec(forged)![1]
  const cases: Array<[Record<string, string>, string]> = [
    [{}, 'CLA_ERR_API_KEY_MISSING'],
    [auth('clv_nonsense'), 'CLA_ERR_API_KEY_INVALID'],
    [auth(forged), 'CLA_ERR_API_KEY_INVALID'],
    [auth(env.revokedKey), 'CLA_ERR_API_KEY_REVOKED'],
  ]
  for (const [headers, code] of cases) {
    const res = await env.app.inject({
      url: '/api/v1/credentials?customer=acme',
      headers,
      remoteAddress: '198.51.100.9',
    })
    t.equal(res.json().error.code, code)
  }
  const rows = listEvents(env.core.db, { kind: 'credential.auth', order: 'asc' })
  t.same(
    rows.map((r) => [r.outcome, r.reason, r.ip, r.route]),
    cases.map(([, code]) => ['refused', code, '198.51.100.9', 'GET /api/v1/credentials']),
    'one refused row per failed check, with the client address',
  )
  t.equal(rows[2]!.actor, `key:${id}`, 'the key id it named')
  t.equal(rows[0]!.actor, 'unknown')
  const metrics = (await env.core.metrics.render()).body
  t.match(
    metrics,
    /clavitor_credential_auth_refusals_total\{reason="CLA_ERR_API_KEY_INVALID",role="core"\} 2\n/,
  )
  t.match(
    metrics,
    /clavitor_credential_auth_refusals_total\{reason="CLA_ERR_API_KEY_MISSING",role="core"\} 1\n/,
  )
  t.match(
    metrics,
    /clavitor_credential_auth_refusals_total\{reason="CLA_ERR_API_KEY_REVOKED",role="core"\} 1\n/,
  )
  const ok = await env.app.inject({
    url: '/api/v1/credentials?customer=acme',
    headers: auth(env.acmeKey),
  })
  t.equal(ok.statusCode, 200)
  t.equal(
    listEvents(env.core.db, { kind: 'credential.auth' }).length,
    4,
    'a good key writes no row',
  )
})

t.test('the OpenAPI document is served', async (t) => {
  const env = await setup(t)
  const res = await env.app.inject({ url: '/api/v1/openapi.json' })
  t.equal(res.statusCode, 200)
  const doc = res.json()
  t.equal(doc.openapi, '3.1.0')
  t.ok(doc.paths['/api/v1/credentials/register'].post)
  t.same(doc, buildOpenApi(), 'the served document is the one in docs/openapi.json')
})
