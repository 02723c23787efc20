// The refusal guard (lib/auth/refusal-guard.ts): refusals before any credential are
// counted and summarized per source, reason and interval, in bounded memory; audited
// refusals count towards a per-address limit that ends with its window.
import { clockOf } from '../../../lib/clock.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { migrate, openDb, type Db } from '../../../lib/db/open.js'
import { listEvents, verifyChain } from '../../../lib/audit/log.js'
import { RefusalGuard } from '../../../lib/auth/refusal-guard.js'

const root = mkdtempSync(join(tmpdir(), 'clavitor-refusals-'))
t.teardown(() => rmSync(root, { recursive: true, force: true }))
let n = 0
function db(): Db {
  const d = openDb(join(root, `meta-${n++}.db`))
  migrate(d)
  return d
}
const summaries = (d: Db) =>
  listEvents(d, { order: 'asc', limit: 10_000 }).map((e) => ({
    kind: e.kind,
    reason: e.reason,
    ip: e.ip,
    ...(JSON.parse(e.data ?? '{}') as { stage: string; count: number; from: number; to: number }),
  }))

t.test('one row per source, stage and reason per interval, with the count and span', async (t) => {
  const d = db()
  let now = 1_000
  const counted: string[] = []
  const g = new RefusalGuard({
    db: d,
    clock: clockOf(() => now),
    onCount: (s, r) => counted.push(`${s}:${r}`),
  })
  for (let i = 0; i < 500; i++) g.count('192.0.2.7', 'connect', 'ip_not_allowed')
  now = 2_000
  g.count('::ffff:192.0.2.7', 'connect', 'ip_not_allowed') // the same address, mapped
  g.count('192.0.2.8', 'tls', 'tls_aborted')
  t.equal(counted.length, 502, 'every refusal reaches the metric at once')
  t.equal(listEvents(d, {}).length, 0, 'nothing written before the interval ends')
  g.flush()
  t.same(summaries(d), [
    {
      kind: 'pop.refusals',
      reason: 'ip_not_allowed',
      ip: '192.0.2.7',
      stage: 'connect',
      count: 501,
      from: 1_000,
      to: 2_000,
    },
    {
      kind: 'pop.refusals',
      reason: 'tls_aborted',
      ip: '192.0.2.8',
      stage: 'tls',
      count: 1,
      from: 2_000,
      to: 2_000,
    },
  ])
  g.flush()
  t.equal(listEvents(d, {}).length, 2, 'an empty interval writes nothing')
  g.count('192.0.2.7', 'connect', 'ip_not_allowed')
  g.stop()
  t.equal(listEvents(d, {}).length, 3, 'stop writes what is pending')
  t.equal(verifyChain(d).ok, true, 'the chain holds')
  d.close()
})

t.test('memory is bounded: sources past maxSources share one row without an address', async (t) => {
  const d = db()
  const g = new RefusalGuard({ db: d, maxSources: 3 })
  for (let i = 1; i <= 10; i++) g.count(`198.51.100.${i}`, 'connect', 'ip_not_allowed')
  g.flush()
  const rows = summaries(d)
  t.equal(rows.length, 4, 'three sources and the overflow row')
  t.same(
    rows.map((r) => [r.ip, r.count]),
    [
      ['198.51.100.1', 1],
      ['198.51.100.2', 1],
      ['198.51.100.3', 1],
      [null, 7],
    ],
  )
  d.close()
})

t.test('the refusal limit: audited refusals per address and window', async (t) => {
  const d = db()
  let now = 0
  const g = new RefusalGuard({ db: d, clock: clockOf(() => now), maxRefusals: 3, windowMs: 10_000 })
  t.equal(g.limitedFor('192.0.2.1'), 0, 'an unknown address is not limited')
  g.noteAudited('192.0.2.1')
  g.noteAudited('192.0.2.1')
  t.equal(g.limitedFor('192.0.2.1'), 0, 'below the limit')
  g.noteAudited('192.0.2.1')
  now = 2_500
  t.equal(g.limitedFor('192.0.2.1'), 8, 'limited until the window ends (seconds, rounded up)')
  t.equal(g.limitedFor('192.0.2.2'), 0, 'another address is not')
  now = 10_000
  t.equal(g.limitedFor('192.0.2.1'), 0, 'a new window starts clean')
  g.noteAudited(undefined) // no address: nothing to limit
  t.equal(g.limitedFor(undefined), 0)
  d.close()
})

t.test('options are validated', async (t) => {
  const d = db()
  for (const bad of [
    { maxRefusals: 0 },
    { windowMs: -1 },
    { summaryIntervalMs: 1.5 },
    { maxSources: 0 },
  ]) {
    t.throws(() => new RefusalGuard({ db: d, ...bad }), RangeError, JSON.stringify(bad))
  }
  d.close()
})
