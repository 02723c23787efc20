import t from 'tap'
import { openDb } from '../../../lib/db/open.js'
import {
  blobGrowth,
  dashboardFacts,
  listDiscounts,
  listSubscriptions,
  listTransactions,
  listVaults,
  pageArgs,
  PAGE_SIZE,
  popLagSeries,
  popStates,
} from '../../../lib/admin/read.js'

t.test('pageArgs: defaults, bounds, junk', async (t) => {
  t.same(pageArgs(undefined, undefined), { limit: PAGE_SIZE, offset: 0 })
  t.same(pageArgs('10', '20'), { limit: 10, offset: 20 })
  t.same(pageArgs('-1', 'x'), { limit: PAGE_SIZE, offset: 0 })
  t.same(pageArgs('100000', '-5'), { limit: 500, offset: 0 })
})

t.test('read models over the tables', async (t) => {
  const db = openDb(`${t.testdir({})}/meta.db`)
  t.teardown(() => db.close())
  t.same(blobGrowth(db), [])
  t.same(popLagSeries(db), [])
  const ins = db.prepare(
    'INSERT INTO blobs (seq, created_at, p0, path, size, file_size, sha256, key_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
  )
  for (let i = 1; i <= 10; i++)
    ins.run(i, 1_000_000 * i, 'ab'.repeat(16), `p/${i}.cla`, 10, 100, '0'.repeat(64), 'k')
  const g = blobGrowth(db, 5)
  t.ok(g.length <= 5 && g.length > 0)
  t.equal(g[g.length - 1]!.count, 10, 'cumulative')
  t.equal(g[g.length - 1]!.bytes, 1000)
  t.ok(
    g.every((p, i) => i === 0 || (p.at > g[i - 1]!.at && p.count >= g[i - 1]!.count)),
    'monotonic',
  )

  db.prepare('INSERT INTO pops (id, name, created_at) VALUES (?, ?, ?)').run('pop-a', 'A', 1)
  db.prepare('INSERT INTO pops (id, created_at) VALUES (?, ?)').run('pop-b', 1)
  db.prepare(
    'INSERT INTO pop_sync_state (pop_id, lag_us, blobs, updated_at) VALUES (?, ?, ?, ?)',
  ).run('pop-a', 5e6, 9, 2)
  for (let i = 0; i < 70; i++)
    db.prepare('INSERT INTO pop_lag_samples (pop_id, at, lag_us) VALUES (?, ?, ?)').run(
      'pop-a',
      i,
      i,
    )
  const series = popLagSeries(db)
  t.equal(series[0]!.points.length, 60, 'newest 60 samples')
  t.equal(series[0]!.points[0]!.at, 10, 'oldest first')
  t.match(popStates(db), [
    { id: 'pop-a', lag_us: 5e6, blobs: 9 },
    { id: 'pop-b', lag_us: null },
  ])

  const f = dashboardFacts(db)
  t.match(f, { blobs: { count: 10, bytes: 1000 }, pops: 2, customers: { msp: 0 }, vaults: 0 })

  for (const list of [listSubscriptions, listTransactions, listVaults, listDiscounts]) {
    t.same(list(db, { limit: 10, offset: 0, scope: null }), {
      rows: [],
      limit: 10,
      offset: 0,
      more: false,
    })
  }
  const now = 1
  db.prepare(
    "INSERT INTO customers (id, level, email, created_at, updated_at) VALUES ('c1', 1, 'a@b.c', ?, ?)",
  ).run(now, now)
  for (let i = 0; i < 3; i++)
    db.prepare('INSERT INTO vaults (id, customer_id, name, created_at) VALUES (?, ?, ?, ?)').run(
      `v${i}`,
      'c1',
      `V${i}`,
      i,
    )
  const p1 = listVaults(db, { limit: 2, offset: 0, scope: null })
  t.equal(p1.rows.length, 2)
  t.ok(p1.more)
  const p2 = listVaults(db, { limit: 2, offset: 2, scope: null })
  t.equal(p2.rows.length, 1)
  t.notOk(p2.more)
})
