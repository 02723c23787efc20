import t from 'tap'
import { credFixture, p0Of } from '../../fixtures/credentials.js'
import { nowMicros } from '../../../lib/db/open.js'
import { encodeCursor } from '../../../lib/store/cursor.js'
import { recordReport } from '../../../lib/core-sync/pop-state.js'

t.test('sync status: which POPs hold each P0 latest version, from their cursors', async (t) => {
  const f = await credFixture((fn) => t.teardown(fn))
  f.addCustomer('acme')
  f.addCustomer('rival')
  f.addSubscription('sub_acme', 'acme')
  f.addSubscription('sub_rival', 'rival')
  const v = f.credentials.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'v' })
  const rv = f.credentials.createVault({
    customerId: 'rival',
    subscriptionId: 'sub_rival',
    name: 'r',
  })
  const addPop = f.db.prepare(
    'INSERT INTO pops (id, name, created_at, removed_at) VALUES (?, ?, ?, ?)',
  )
  addPop.run('ams', 'Amsterdam', nowMicros(), null)
  addPop.run('fra', null, nowMicros(), null)
  addPop.run('nyc', null, nowMicros(), null)
  addPop.run('old', null, nowMicros(), nowMicros())

  const a1 = await f.credentials.registerCredential({
    vault: v.id,
    p0: p0Of(1),
    wl3: Buffer.from('a1'),
  })
  const b1 = await f.credentials.registerCredential({
    vault: v.id,
    p0: p0Of(2),
    wl3: Buffer.from('b1'),
  })
  await f.credentials.registerCredential({ vault: rv.id, p0: p0Of(9), wl3: Buffer.from('rival') })

  // ams caught up to b1; fra only to a1; nyc never reported.
  recordReport(f.db, 'ams', {
    cursor: encodeCursor({ created_at: b1.created_at, seq: b1.seq }),
    ok: true,
    error: null,
  })
  recordReport(f.db, 'fra', {
    cursor: encodeCursor({ created_at: a1.created_at, seq: a1.seq }),
    ok: true,
    error: null,
  })

  let s = f.credentials.syncStatus('acme')
  t.same(
    s.pops.map((p) => p.id),
    ['ams', 'fra', 'nyc'],
    'removed POPs are left out',
  )
  t.match(s.pops[0], { name: 'Amsterdam', cursor_created_at: b1.created_at, cursor_seq: b1.seq })
  t.match(s.pops[2], { cursor_created_at: null, cursor_seq: null })
  t.same(
    s.items.map((i) => [i.p0, i.version, i.held_by, i.missing_on]),
    [
      [p0Of(1), 1, ['ams', 'fra'], ['nyc']],
      [p0Of(2), 1, ['ams'], ['fra', 'nyc']],
    ],
  )
  t.equal(s.next, null)

  // A new version of P0 1 is on no POP until they pull past it.
  const a2 = await f.credentials.registerCredential({
    vault: v.id,
    p0: p0Of(1),
    wl3: Buffer.from('a2'),
  })
  s = f.credentials.syncStatus('acme')
  t.match(s.items[0], {
    p0: p0Of(1),
    version: 2,
    seq: a2.seq,
    held_by: [],
    missing_on: ['ams', 'fra', 'nyc'],
  })
  recordReport(f.db, 'nyc', {
    cursor: encodeCursor({ created_at: a2.created_at, seq: a2.seq }),
    ok: true,
    error: null,
  })
  s = f.credentials.syncStatus('acme', { limit: 1 })
  t.same(
    s.items.map((i) => [i.p0, i.held_by]),
    [[p0Of(1), ['nyc']]],
  )
  t.equal(s.next, p0Of(1))
  s = f.credentials.syncStatus('acme', { after: s.next! })
  t.same(
    s.items.map((i) => [i.p0, i.held_by]),
    [[p0Of(2), ['ams', 'nyc']]],
  )
  t.same(
    f.credentials.syncStatus('rival').items.map((i) => i.p0),
    [p0Of(9)],
    'each customer sees its own P0s',
  )
})

t.test(
  'a cursor that cannot be decoded is an internal error, not a silent "holds nothing"',
  async (t) => {
    const f = await credFixture((fn) => t.teardown(fn))
    f.addCustomer('acme')
    f.db.prepare("INSERT INTO pops (id, created_at) VALUES ('bad', 1)").run()
    f.db
      .prepare("INSERT INTO pop_sync_state (pop_id, cursor, updated_at) VALUES ('bad', 'junk', 1)")
      .run()
    t.throws(() => f.credentials.syncStatus('acme'), {
      code: 'CLA_ERR_INTERNAL',
      details: { pop: 'bad' },
    })
    f.db.prepare("UPDATE pop_sync_state SET cursor = NULL WHERE pop_id = 'bad'").run()
    t.same(f.credentials.syncStatus('acme').pops[0], {
      id: 'bad',
      name: null,
      cursor_created_at: null,
      cursor_seq: null,
      last_success_at: null,
      lag_us: null,
    })
  },
)

t.test('sync status pages to the end although the index lacks some blobs', async (t) => {
  const f = await credFixture((fn) => t.teardown(fn))
  f.addCustomer('acme')
  f.addSubscription('sub_acme', 'acme')
  const v = f.credentials.createVault({ customerId: 'acme', subscriptionId: 'sub_acme', name: 'v' })
  const regs = []
  for (let i = 1; i <= 6; i++)
    regs.push(
      await f.credentials.registerCredential({
        vault: v.id,
        p0: p0Of(i),
        wl3: Buffer.from(`w${i}`),
      }),
    )
  // P0s 2 and 3 lose their index rows (foreign keys off, as a lost index leaves them)
  f.db.pragma('foreign_keys = OFF')
  for (const r of [regs[1]!, regs[2]!]) f.db.prepare('DELETE FROM blobs WHERE seq = ?').run(r.seq)
  f.db.pragma('foreign_keys = ON')
  const seen: string[] = []
  let after: string | undefined
  for (let pages = 0; pages < 10; pages++) {
    const s = f.credentials.syncStatus('acme', { limit: 2, ...(after ? { after } : {}) })
    seen.push(...s.items.map((i) => i.p0))
    if (s.next === null) break
    t.equal(s.items.length, 2, 'a page that is not the last one is full')
    after = s.next
  }
  t.same(seen, [1, 4, 5, 6].map(p0Of), 'every P0 the index still holds, none skipped')
})
