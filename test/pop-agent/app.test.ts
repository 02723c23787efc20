// The POP app's edges: rate limit per client address on the lookup routes, /healthz
// without a POP instance and its 503 after a failed run, the reserved audit-anchor P0.
import t from 'tap'
import { join } from 'node:path'
import { buildPopApp, POP_RATE_LIMIT, rateLimitKey } from '../../pop-agent/app.js'
import { openTestPop, randomP0, startCore, tempDir } from '../fixtures/sync.js'

t.test(
  'lookups are rate-limited per address (429 CLA_ERR_SYNC_RATE_LIMITED, Retry-After)',
  async (t) => {
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    const p0 = randomP0()
    await core.addBlobs(1, [p0])
    const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-rl')
    await pop.sync.run()
    const app = await buildPopApp({ pop, rateLimit: { max: 3, timeWindowMs: 60_000 } })
    t.teardown(() => app.close())
    for (let i = 0; i < 3; i++)
      t.equal((await app.inject({ url: `/api/v1/wl3/${p0}` })).statusCode, 200)
    const limited = await app.inject({ url: `/api/v1/wl3/${p0}` })
    t.equal(limited.statusCode, 429)
    t.equal(limited.json().error.code, 'CLA_ERR_SYNC_RATE_LIMITED')
    t.ok(limited.headers['retry-after'])
    t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'health is not limited')
  },
)

// Issue 18: many vault devices share one address behind a NAT, so the default budget is
// large; an IPv6 client counts by its /64, or it could take a fresh budget per address.
t.test('the default budget fits many devices behind one address', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const p0 = randomP0()
  await core.addBlobs(1, [p0])
  const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-rl-default')
  await pop.sync.run()
  const app = await buildPopApp({ pop })
  t.teardown(() => app.close())
  const r = await app.inject({ url: `/api/v1/wl3/${p0}` })
  t.equal(r.statusCode, 200)
  t.equal(POP_RATE_LIMIT.max, 60_000)
  t.equal(POP_RATE_LIMIT.timeWindowMs, 60_000)
  t.equal(r.headers['x-ratelimit-limit'], '60000', 'the default is in force')
})

t.test('an IPv6 client counts by its /64, an IPv4 one by its address', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const p0 = randomP0()
  await core.addBlobs(1, [p0])
  const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-rl-v6')
  await pop.sync.run()
  const app = await buildPopApp({ pop, rateLimit: { max: 2, timeWindowMs: 60_000 } })
  t.teardown(() => app.close())
  const from = async (remoteAddress: string) =>
    (await app.inject({ url: `/api/v1/wl3/${p0}`, remoteAddress })).statusCode
  t.equal(await from('2001:db8:1:2::1'), 200)
  t.equal(await from('2001:db8:1:2::2'), 200)
  t.equal(await from('2001:db8:1:2:ffff::9'), 429, 'another address of the same /64 shares it')
  t.equal(await from('2001:db8:1:3::1'), 200, 'another /64 has its own')
  t.equal(await from('192.0.2.1'), 200)
  t.equal(await from('192.0.2.1'), 200)
  t.equal(await from('::ffff:192.0.2.1'), 429, 'an IPv4-mapped address is the IPv4 one')
  t.equal(await from('192.0.2.2'), 200, 'another IPv4 address has its own')
  t.equal(rateLimitKey('2001:DB8:0:0:1::1'), '2001:db8:0:0::/64')
  t.equal(rateLimitKey('not-an-address:x'), 'not-an-address:x', 'kept as it is when unparsable')
})

t.test('a ready app has filled the lookup cache: the first lookup is a hit', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const p0 = randomP0()
  await core.addBlobs(1, [p0])
  const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-prefetch')
  await pop.sync.run()
  const cold = await buildPopApp({ pop, prefetch: false })
  t.teardown(() => cold.close())
  await cold.ready()
  t.equal(pop.lookup.cachedAnswers, 0, 'prefetch: false leaves it empty')
  const app = await buildPopApp({ pop })
  t.teardown(() => app.close())
  await app.ready() // the first page of the prefetch runs in the ready hook itself
  t.equal(pop.lookup.cachedAnswers, 1)
  t.equal((await app.inject({ url: `/api/v1/wl3/${p0}` })).statusCode, 200)
  t.equal(pop.lookup.misses, 0)
  t.equal(pop.lookup.hits, 1)
})

t.test('an app without a POP answers /healthz only', async (t) => {
  const app = await buildPopApp()
  t.teardown(() => app.close())
  t.same((await app.inject({ url: '/healthz' })).json(), { ok: true })
  t.equal((await app.inject({ url: `/api/v1/wl3/${randomP0()}` })).statusCode, 404)
})

t.test(
  '/healthz answers 503 while the last run failed, like the core when unhealthy',
  async (t) => {
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    await core.addBlobs(2)
    const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-h', {
      rsyncSource: join(dir, 'no-such-store'),
    })
    const app = await buildPopApp({ pop })
    t.teardown(() => app.close())
    const fresh = await app.inject({ url: '/healthz' })
    t.equal(fresh.statusCode, 200, 'no run yet: healthy')
    t.match(fresh.json(), { ok: true, last_run: null })
    await t.rejects(pop.sync.run())
    const failed = await app.inject({ url: '/healthz' })
    t.equal(failed.statusCode, 503, 'ok false: 503, so a balancer or monitor sees it')
    t.match(failed.json(), { ok: false, pop_id: 'pop-h', last_run: { ok: false } })
  },
)

// Issue 11, item 1: anchors replicate to POPs as ordinary blobs; the POP holds them but
// never serves them as a WL3 (the P0 is the core's own, refused like at registration).
t.test('the audit-anchor P0 replicates but every lookup of it is refused', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const anchorP0 = '0'.repeat(64)
  const p0 = randomP0()
  await core.store.put(anchorP0, Buffer.from('{"v":2,"type":"clavitor.audit.anchor"}'))
  await core.addBlobs(1, [p0])
  const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-anchor')
  await pop.sync.run()
  t.equal(pop.store.versions(anchorP0).length, 1, 'the anchor replicated like any blob')
  const app = await buildPopApp({ pop })
  t.teardown(() => app.close())
  for (const url of [
    `/api/v1/wl3/${anchorP0}`,
    `/api/v1/wl3/${anchorP0}/cla`,
    `/api/v1/wl3/${anchorP0}/versions`,
  ]) {
    const r = await app.inject({ url })
    t.equal(r.statusCode, 400, `${url}: ${r.body}`)
    t.equal(r.json().error.code, 'CLA_ERR_P0_RESERVED', url)
  }
  t.equal((await app.inject({ url: `/api/v1/wl3/${p0}` })).statusCode, 200, 'a WL3 is served')
})
