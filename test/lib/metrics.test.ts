import t from 'tap'
import { join } from 'node:path'
import { openDb } from '../../lib/db/open.js'
import { Metrics } from '../../lib/metrics.js'

t.test('core metrics are computed from the database on scrape', async (t) => {
  const db = openDb(join(t.testdir(), 'meta.db'))
  t.teardown(() => db.close())
  const m = new Metrics({ role: 'core', db, processMetrics: false })
  const ins = db.prepare(
    'INSERT INTO blobs (seq, created_at, p0, path, size, file_size, sha256, key_id) VALUES (?, ?, ?, ?, 10, 100, ?, ?)',
  )
  ins.run(1, 1, 'aa'.repeat(16), 'aa/x/1.cla', 'h', 'k')
  ins.run(2, 2, 'aa'.repeat(16), 'aa/x/2.cla', 'h', 'k')
  db.prepare(
    "INSERT INTO customers (id, level, email, created_at, updated_at, pending_since) VALUES ('c1', 1, 'a@b.c', 1, 1, 1)",
  ).run()
  db.prepare("INSERT INTO pops (id, created_at) VALUES ('p1', 1)").run()
  db.prepare(
    "INSERT INTO pop_sync_state (pop_id, lag_us, updated_at) VALUES ('p1', 2500000, 1)",
  ).run()
  db.prepare(
    "INSERT INTO events (at, kind, actor, outcome, reason, prev_hash, hash) VALUES (1, 'pop.request', 'x', 'refused', 'CLA_ERR_AUTH_IP', '0', '1')",
  ).run()
  m.observeRequest('GET', '/api/v1/wl3/:p0', 200, 0.002)

  const { body, contentType } = await m.render()
  t.match(contentType, /text\/plain/)
  t.match(body, /clavitor_blobs\{role="core"\} 2/)
  t.match(body, /clavitor_blob_bytes\{role="core"\} 200/)
  t.match(body, /clavitor_billing_pending\{entity="customers",role="core"\} 1/)
  t.match(body, /clavitor_pop_lag_seconds\{pop="p1",role="core"\} 2\.5/)
  t.notMatch(
    body,
    /clavitor_auth_refusals(_total)?\{/,
    'refusals are not counted from the audit log at scrape (a scan that grew with the log)',
  )
  t.match(
    body,
    /clavitor_http_request_duration_seconds_count\{role="core",method="GET",route="\/api\/v1\/wl3\/:p0",status="200"\} 1/,
  )
})

t.test('two instances do not share counters', async (t) => {
  const db = openDb(join(t.testdir(), 'meta.db'))
  t.teardown(() => db.close())
  const a = new Metrics({ role: 'pop', db, processMetrics: false })
  const b = new Metrics({ role: 'pop', db, processMetrics: false })
  a.syncRuns.inc({ trigger: 'wake' })
  b.syncRuns.inc({ trigger: 'regular' })
  t.match((await a.render()).body, /clavitor_sync_runs_total\{trigger="wake",role="pop"\} 1/)
  t.notMatch((await b.render()).body, /trigger="wake"/)
  t.notMatch((await a.render()).body, /clavitor_billing_pending/, 'POPs have no billing')
})

t.test("a POP's lag gauge has no series while the lag is unknown", async (t) => {
  const db = openDb(join(t.testdir(), 'meta.db'))
  t.teardown(() => db.close())
  let lag: number | null = null
  const m = new Metrics({ role: 'pop', db, processMetrics: false, popLagUs: () => lag })
  t.notMatch((await m.render()).body, /clavitor_sync_lag_seconds\{/, 'never run: no value, not 0')
  lag = 5_000_000
  t.match((await m.render()).body, /clavitor_sync_lag_seconds\{role="pop"\} 5\n/)
  lag = null
  t.notMatch(
    (await m.render()).body,
    /clavitor_sync_lag_seconds\{/,
    'unknown again: the old value is not kept',
  )
})

t.test('auth refusals are counters, incremented where the refusal is audited', async (t) => {
  const db = openDb(join(t.testdir(), 'meta.db'))
  t.teardown(() => db.close())
  const m = new Metrics({ role: 'core', db, processMetrics: false })
  m.authRefusals.inc({ reason: 'sig_invalid' })
  m.authRefusals.inc({ reason: 'sig_invalid' })
  m.credentialAuthRefusals.inc({ reason: 'CLA_ERR_API_KEY_INVALID' })
  db.prepare(
    "INSERT INTO events (at, kind, actor, outcome, reason, prev_hash, hash) VALUES (1, 'pop.request', 'x', 'refused', 'sig_invalid', '0', '1')",
  ).run()
  const { body } = await m.render()
  t.match(body, /# TYPE clavitor_auth_refusals_total counter/)
  t.match(
    body,
    /clavitor_auth_refusals_total\{reason="sig_invalid",role="core"\} 2\n/,
    'no table read',
  )
  t.match(
    body,
    /clavitor_credential_auth_refusals_total\{reason="CLA_ERR_API_KEY_INVALID",role="core"\} 1\n/,
  )
})
