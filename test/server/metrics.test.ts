import t from 'tap'
import { execFileSync } from 'node:child_process'
import { openCore } from '../../lib/core.js'
import { buildCoreApp } from '../../server/app.js'

t.test('the core serves /metrics with blob counts and route-labelled latency', async (t) => {
  const dir = t.testdir()
  const core = await openCore({ dataDir: dir, protection: 'off' })
  const token = 'm'.repeat(32)
  const app = await buildCoreApp({ core, metrics: { token } })
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
  const res = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${token}` } })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /text\/plain/)
  t.match(res.body, /clavitor_blobs\{role="core"\} 1/)
  t.match(
    res.body,
    /clavitor_http_request_duration_seconds_count\{role="core",method="GET",route="\/healthz",status="200"\} 2/,
  )
  t.match(res.body, /clavitor_process_resident_memory_bytes/)
})

// Regression (issue 11, item 9): /metrics (POP ids, refusal counts by reason, the billing
// backlog) was served to anyone on the core's public port and on every POP.
t.test('/metrics is never anonymous', async (t) => {
  const dir = t.testdir()
  const core = await openCore({ dataDir: dir, protection: 'off' })
  t.teardown(() => core.close())
  const closed = await buildCoreApp({ core })
  t.teardown(() => closed.close())
  t.equal((await closed.inject('/metrics')).statusCode, 404, 'not served without a token')
  await closed.inject('/healthz')
  t.match(
    (await core.metrics.render()).body,
    /clavitor_http_request_duration_seconds_count\{role="core",method="GET",route="\/healthz"/,
    'latency is still recorded',
  )

  const token = 't'.repeat(24)
  const app = await buildCoreApp({ core, metrics: { token } })
  t.teardown(() => app.close())
  for (const authorization of [
    undefined,
    'Bearer wrong-token-wrong-token',
    `Basic ${token}`,
    token,
  ]) {
    const res = await app.inject({
      url: '/metrics',
      headers: authorization ? { authorization } : {},
    })
    t.equal(res.statusCode, 401, `refused: ${authorization ?? 'no header'}`)
    t.equal(res.json().error.code, 'CLA_ERR_METRICS_UNAUTHORIZED')
    t.equal(res.headers['www-authenticate'], 'Bearer realm="metrics"')
    t.notMatch(res.body, /clavitor_/)
  }
  const ok = await app.inject({ url: '/metrics', headers: { authorization: `bearer ${token}` } })
  t.equal(ok.statusCode, 200, 'the token opens it')
  await t.rejects(buildCoreApp({ core, metrics: { token: 'short' } }), {
    code: 'CLA_ERR_INVALID_OPTION',
  })
})
