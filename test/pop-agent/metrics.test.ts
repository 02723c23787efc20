// The POP serves /metrics: its pulls (count, errors by reason, blobs sealed), its lag,
// its index size and lookup latency by route pattern.
import t from 'tap'
import { join } from 'node:path'
import { buildPopApp } from '../../pop-agent/app.js'
import { openTestPop, randomP0, startCore, tempDir } from '../fixtures/sync.js'

t.test('POP /metrics counts pulls, sealed blobs, lag and lookups', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const p0 = randomP0()
  await core.addBlobs(3, [p0, p0, p0])
  const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-m')
  await pop.sync.run()
  await pop.sync.run()
  const token = 'p'.repeat(32)
  const app = await buildPopApp({ pop, metrics: { token } })
  t.teardown(() => app.close())
  t.equal((await app.inject({ url: `/api/v1/wl3/${p0}` })).statusCode, 200)

  const body = (
    await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${token}` } })
  ).body
  t.match(body, /clavitor_sync_runs_total\{trigger="manual",role="pop"\} 2/)
  t.match(body, /clavitor_sync_blobs_total\{role="pop"\} 3/)
  t.match(body, /clavitor_sync_lag_seconds\{role="pop"\} 0/)
  t.match(body, /clavitor_blobs\{role="pop"\} 3/)
  t.match(
    body,
    /clavitor_http_request_duration_seconds_count\{role="pop",method="GET",route="\/api\/v1\/wl3\/:p0",status="200"\} 1/,
  )
  t.notMatch(body, new RegExp(p0), 'no P0 in any label')
  t.notMatch(body, /clavitor_billing_pending/)
})

t.test('a failed pull is counted by its reason code', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  await core.addBlobs(2)
  const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-f', {
    rsyncSource: join(dir, 'no-such-store'),
  })
  const err = await pop.sync.run().then(
    () => null,
    (e: { code?: string }) => e,
  )
  t.ok(err?.code, `the run failed (${err?.code})`)
  const body = (await pop.metrics.render()).body
  t.match(body, /clavitor_sync_runs_total\{trigger="manual",role="pop"\} 1/)
  t.match(
    body,
    new RegExp(`clavitor_sync_run_errors_total\\{reason="${err!.code}",role="pop"\\} 1`),
  )
  t.match(body, /clavitor_sync_blobs_total\{role="pop"\} 0/)
})
