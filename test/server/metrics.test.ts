import t from 'tap'
import { execFileSync } from 'node:child_process'
import { openCore } from '../../lib/core.js'
import { buildCoreApp } from '../../server/app.js'

t.test('the core serves /metrics with blob counts and route-labelled latency', async (t) => {
  const dir = t.testdir()
  const core = await openCore({ dataDir: dir, protection: 'off' })
  const app = await buildCoreApp({ core })
  t.teardown(async () => {
    await app.close()
    await core.close()
    try {
      execFileSync('chattr', ['-R', '-i', '-a', dir], { stdio: 'ignore' })
    } catch {}
  })
  await core.store.put('ab'.repeat(16), Buffer.from('wl3'))
  const health = await app.inject({ url: '/healthz', headers: { 'x-request-id': 'forged' } })
  t.equal(health.statusCode, 200)
  const rid = health.headers['x-request-id']
  t.match(
    rid,
    /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    'a fresh UUID request id',
  )
  t.not(
    (await app.inject('/healthz')).headers['x-request-id'],
    rid,
    'one per request; a client id is not adopted',
  )
  const res = await app.inject('/metrics')
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/plain/)
  t.match(res.body, /clavitor_blobs\{role="core"\} 1/)
  t.match(
    res.body,
    /clavitor_http_request_duration_seconds_count\{role="core",method="GET",route="\/healthz",status="200"\} 2/,
  )
  t.match(res.body, /clavitor_process_resident_memory_bytes/)
})
