// lib/core-sync/pop-state.ts: the core's record of each POP's reports. (Its first tests,
// with the feed's, are in feed.test.ts.) Here: the lag of a POP that holds nothing is
// unknown, never "since 1970".
import t from 'tap'
import { join } from 'node:path'
import { openDb, type Db } from '../../../lib/db/open.js'
import {
  lagMicros,
  listPopSyncStates,
  recordReport,
  validateReport,
} from '../../../lib/core-sync/pop-state.js'
import { encodeCursor } from '../../../lib/store/cursor.js'

function addBlob(db: Db, seq: number, created_at: number): void {
  const p0 = (seq.toString(16).padStart(2, '0') + 'ab'.repeat(16)).slice(0, 32)
  db.prepare(
    'INSERT INTO blobs (seq, created_at, p0, path, size, file_size, sha256, key_id, sealed) VALUES (?,?,?,?,?,?,?,?,1)',
  ).run(
    seq,
    created_at,
    p0,
    `${p0.slice(0, 2)}/${p0}/${String(created_at).padStart(16, '0')}_${'0'.repeat(15)}${seq % 10}.cla`,
    10,
    200,
    'f'.repeat(64),
    'k'.repeat(32),
  )
}

function fresh(t: { testdir(): string; teardown(fn: () => void): void }): Db {
  const db = openDb(join(t.testdir(), 'meta.db'))
  t.teardown(() => db.close())
  db.prepare("INSERT INTO pops (id, name, created_at) VALUES ('pop-a', 'A', 1)").run()
  return db
}

const samples = (db: Db) =>
  db.prepare("SELECT at, lag_us FROM pop_lag_samples WHERE pop_id = 'pop-a' ORDER BY at").all()

t.test('a POP that holds nothing: lag unknown while the core holds blobs', async (t) => {
  const db = fresh(t)
  t.equal(lagMicros(db, null), 0, 'nothing on either side: caught up')
  addBlob(db, 1, 1_700_000_000_000_000)
  addBlob(db, 2, 1_700_000_001_000_000)
  t.equal(lagMicros(db, null), null, 'not the time since 1970: unknown')

  const r = recordReport(db, 'pop-a', validateReport({ cursor: null, ok: true, blobs: 0 }), 100)
  t.equal(r.lag_us, null, 'stored as unknown')
  t.same(samples(db), [], 'no lag sample for the chart')
  t.equal(listPopSyncStates(db)[0]!.sync!.lag_us, null)

  const cur = encodeCursor({ created_at: 1_700_000_000_000_000, seq: 1 })
  const r2 = recordReport(db, 'pop-a', validateReport({ cursor: cur, ok: true, blobs: 1 }), 200)
  t.equal(r2.lag_us, 1_000_000, 'known again once it holds a blob')
  t.same(samples(db), [{ at: 200, lag_us: 1_000_000 }])
})

t.test('a successful run clears last_error; last_error_at stays as history', async (t) => {
  const db = fresh(t)
  addBlob(db, 1, 1_000_000)
  const cur = encodeCursor({ created_at: 1_000_000, seq: 1 })
  const failed = recordReport(
    db,
    'pop-a',
    validateReport({
      cursor: null,
      ok: false,
      error: { code: 'CLA_ERR_SYNC_NETWORK', message: 'cut' },
    }),
    100,
  )
  t.equal(failed.last_error, 'CLA_ERR_SYNC_NETWORK: cut')
  const ok = recordReport(db, 'pop-a', validateReport({ cursor: cur, ok: true }), 200)
  t.equal(ok.last_error, null, 'no longer shows the old error')
  t.equal(ok.last_error_at, 100, 'when it last failed, kept')
  t.equal(ok.last_success_at, 200)
  t.match(listPopSyncStates(db)[0]!.sync, { last_error: null, last_error_at: 100 })
  const alarm = recordReport(
    db,
    'pop-a',
    validateReport({
      cursor: cur,
      ok: true,
      error: { code: 'CLA_ERR_SYNC_STORE_MISMATCH', message: 're-baselined' },
    }),
    300,
  )
  t.equal(
    alarm.last_error,
    'CLA_ERR_SYNC_STORE_MISMATCH: re-baselined',
    'an ok run with an alarm shows it',
  )
  t.equal(alarm.last_error_at, 300)
  const again = recordReport(db, 'pop-a', validateReport({ cursor: cur, ok: true }), 400)
  t.equal(again.last_error, null)
  t.equal(again.last_error_at, 300)
})
