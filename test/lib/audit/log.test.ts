import type { AuditKind } from '../../../lib/audit/kinds.js'
import t, { type Test } from 'tap'
import { join } from 'node:path'
import { openDb, type Db } from '../../../lib/db/open.js'
import {
  appendEvent,
  chainHead,
  GENESIS_HASH,
  hashEvent,
  listEvents,
  verifyChain,
  type EventRow,
} from '../../../lib/audit/log.js'
import { isClavitorError } from '../../../lib/errors.js'

function freshDb(t: Test): Db {
  const dir = t.testdir()
  const db = openDb(join(dir, 'meta.db'))
  t.teardown(() => db.close())
  return db
}

function fill(db: Db, n: number): EventRow[] {
  const rows: EventRow[] = []
  for (let i = 0; i < n; i++) {
    rows.push(
      appendEvent(db, {
        kind: i % 2 ? 'pop.request' : 'admin.action',
        actor: `actor-${i}`,
        outcome: i % 3 ? 'allowed' : 'refused',
        reason: i % 3 ? undefined : 'CLA_ERR_AUTH_SIGNATURE',
        ip: '127.0.0.1',
        route: '/pop/v1/feed',
        data: { i, nested: { a: [1, 2] } },
      }),
    )
  }
  return rows
}

t.test('append chains rows from the genesis hash', async (t) => {
  const db = freshDb(t)
  const rows = fill(db, 5)
  t.equal(rows[0]!.id, 1)
  t.equal(rows[0]!.prev_hash, GENESIS_HASH)
  for (let i = 1; i < rows.length; i++) t.equal(rows[i]!.prev_hash, rows[i - 1]!.hash)
  const { hash, ...rest } = rows[2]!
  t.equal(hashEvent(rest), hash, 'hash is the canonical hash of the stored fields')
  t.same(verifyChain(db), { ok: true, count: 5, head: { id: 5, hash: rows[4]!.hash } })
  t.same(chainHead(db), { id: 5, hash: rows[4]!.hash })
  t.equal(rows[1]!.data, JSON.stringify({ i: 1, nested: { a: [1, 2] } }))
})

t.test('empty log verifies', async (t) => {
  const db = freshDb(t)
  t.same(verifyChain(db), { ok: true, count: 0, head: null })
  t.same(chainHead(db), { id: 0, hash: GENESIS_HASH })
})

t.test('an edited row is found', async (t) => {
  const db = freshDb(t)
  fill(db, 6)
  db.prepare("UPDATE events SET outcome = 'allowed' WHERE id = 4").run()
  const r = verifyChain(db)
  t.equal(r.ok, false)
  if (!r.ok) {
    t.equal(r.firstBrokenId, 4)
    t.match(r.reason, /edited/)
  }
})

t.test('an edited row whose hash was recomputed breaks the next row', async (t) => {
  const db = freshDb(t)
  fill(db, 6)
  const row = db.prepare('SELECT * FROM events WHERE id = 3').get() as EventRow
  const edited = { ...row, actor: 'someone-else' }
  const { hash: _old, ...rest } = edited
  db.prepare('UPDATE events SET actor = ?, hash = ? WHERE id = 3').run(
    edited.actor,
    hashEvent(rest),
  )
  const r = verifyChain(db)
  t.equal(r.ok, false)
  if (!r.ok) t.equal(r.firstBrokenId, 4)
})

t.test('a deleted row in the middle is found', async (t) => {
  const db = freshDb(t)
  fill(db, 6)
  db.prepare('DELETE FROM events WHERE id = 3').run()
  const r = verifyChain(db)
  t.equal(r.ok, false)
  if (!r.ok) {
    t.equal(r.firstBrokenId, 4)
    t.match(r.reason, /row 3 is missing/)
  }
})

t.test('the first row deleted is found', async (t) => {
  const db = freshDb(t)
  fill(db, 3)
  db.prepare('DELETE FROM events WHERE id = 1').run()
  const r = verifyChain(db)
  t.equal(r.ok, false)
  if (!r.ok) t.equal(r.firstBrokenId, 2)
})

t.test('reordered rows are found', async (t) => {
  const db = freshDb(t)
  fill(db, 6)
  // swap the contents of rows 2 and 3 (ids stay in place)
  db.transaction(() => {
    db.prepare('UPDATE events SET id = -2 WHERE id = 2').run()
    db.prepare('UPDATE events SET id = 2 WHERE id = 3').run()
    db.prepare('UPDATE events SET id = 3 WHERE id = -2').run()
  })()
  const r = verifyChain(db)
  t.equal(r.ok, false)
  if (!r.ok) t.equal(r.firstBrokenId, 2)
})

t.test('deleted trailing rows are found only with an anchor', async (t) => {
  const db = freshDb(t)
  fill(db, 6)
  const anchor = chainHead(db)
  db.prepare('DELETE FROM events WHERE id >= 5').run()
  t.equal(verifyChain(db).ok, true, 'the table alone cannot tell')
  const r = verifyChain(db, { anchors: [anchor] })
  t.equal(r.ok, false)
  if (!r.ok) {
    t.equal(r.firstBrokenId, 5)
    t.match(r.reason, /trailing rows deleted/)
  }
})

t.test('a rewritten table is found with an anchor', async (t) => {
  const db = freshDb(t)
  fill(db, 4)
  const anchor = chainHead(db)
  // an attacker rewrites every row with a valid chain
  db.prepare('DELETE FROM events').run()
  for (let i = 0; i < 5; i++)
    appendEvent(db, { kind: 'admin.action', actor: 'x', outcome: 'ok', at: i })
  t.equal(verifyChain(db).ok, true)
  const r = verifyChain(db, { anchors: [anchor] })
  t.equal(r.ok, false)
  if (!r.ok) t.equal(r.firstBrokenId, 4)
})

t.test('appendEvent inside a caller transaction is rolled back with it', async (t) => {
  const db = freshDb(t)
  fill(db, 2)
  t.throws(() =>
    db.transaction(() => {
      appendEvent(db, { kind: 'admin.action', actor: 'a', outcome: 'ok' })
      throw new Error('caller fails')
    })(),
  )
  const ok = db.transaction(() =>
    appendEvent(db, { kind: 'admin.action', actor: 'a', outcome: 'ok' }),
  )()
  t.equal(ok.id, 3)
  t.equal(verifyChain(db).ok, true)
})

t.test('bad input and a failing write throw coded errors', async (t) => {
  const db = freshDb(t)
  t.throws(() => appendEvent(db, { kind: '' as AuditKind, actor: 'a', outcome: 'ok' }), {
    code: 'CLA_ERR_INVALID_INPUT',
  })
  t.throws(
    () => appendEvent(db, { kind: 'made.up' as AuditKind, actor: 'a', outcome: 'ok' }),
    { code: 'CLA_ERR_INVALID_INPUT', message: /unknown kind "made.up"/ },
    'only the kinds of lib/audit/kinds.ts',
  )
  t.throws(() => appendEvent(db, { kind: 'admin.action', actor: 'a', outcome: 'ok', at: 1.5 }), {
    code: 'CLA_ERR_INVALID_INPUT',
  })
  db.exec(
    "CREATE TRIGGER no_events BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk says no'); END",
  )
  try {
    appendEvent(db, { kind: 'admin.action', actor: 'a', outcome: 'ok' })
    t.fail('should throw')
  } catch (err) {
    t.ok(isClavitorError(err, 'CLA_ERR_AUDIT_WRITE_FAILED'))
  }
})

t.test('listEvents filters and pages', async (t) => {
  const db = freshDb(t)
  fill(db, 10)
  t.equal(listEvents(db).length, 10)
  t.equal(listEvents(db)[0]!.id, 10, 'newest first by default')
  t.equal(
    listEvents(db, { order: 'asc', limit: 3 })
      .map((r) => r.id)
      .join(),
    '1,2,3',
  )
  t.equal(listEvents(db, { kind: 'pop.request' }).length, 5)
  t.equal(listEvents(db, { kindPrefix: 'pop.' }).length, 5)
  t.equal(listEvents(db, { outcome: 'refused' }).length, 4)
  t.equal(listEvents(db, { reason: 'CLA_ERR_AUTH_SIGNATURE', actor: 'actor-3' }).length, 1)
  t.equal(
    listEvents(db, { afterId: 7, order: 'asc' })
      .map((r) => r.id)
      .join(),
    '8,9,10',
  )
  t.equal(
    listEvents(db, { beforeId: 3 })
      .map((r) => r.id)
      .join(),
    '2,1',
  )
  const at = listEvents(db, { order: 'asc' })[4]!.at
  t.ok(listEvents(db, { since: at }).every((r) => r.at >= at))
  t.ok(listEvents(db, { until: at }).every((r) => r.at < at))
})

t.test('listEvents refuses a paging number that is not a whole number in range', async (t) => {
  const db = freshDb(t)
  fill(db, 3)
  const bad: Array<[string, Record<string, unknown>]> = [
    ['limit', { limit: Number.NaN }],
    ['limit', { limit: Number('ten') }],
    ['limit', { limit: 1.5 }],
    ['limit', { limit: 0 }],
    ['limit', { limit: -5 }],
    ['limit', { limit: '10' }],
    ['limit', { limit: Infinity }],
    ['afterId', { afterId: Number.NaN }],
    ['beforeId', { beforeId: -1 }],
    ['since', { since: 2.5 }],
    ['until', { until: Number.NaN }],
    ['order', { order: 'sideways' }],
  ]
  for (const [field, filter] of bad) {
    t.throws(
      () => listEvents(db, filter as never),
      { code: 'CLA_ERR_INVALID_INPUT', details: { field } },
      `${JSON.stringify(filter)} (${String(Object.values(filter)[0])})`,
    )
  }
  t.equal(listEvents(db, { limit: 5000 }).length, 3, 'above 1000: at most 1000, as documented')
  t.equal(listEvents(db, { limit: 1 }).length, 1)
  t.equal(listEvents(db, { afterId: 0, beforeId: 3 }).length, 2, 'id 0 is a valid bound')
})
