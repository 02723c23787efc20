// The POP app's edges: rate limit per client address on the lookup routes, /healthz
// without a POP instance.
import t from 'tap'
import { join } from 'node:path'
import { buildPopApp } from '../../pop-agent/app.js'
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

t.test('an app without a POP answers /healthz only', async (t) => {
  const app = await buildPopApp()
  t.teardown(() => app.close())
  t.same((await app.inject({ url: '/healthz' })).json(), { ok: true })
  t.equal((await app.inject({ url: `/api/v1/wl3/${randomP0()}` })).statusCode, 404)
})
