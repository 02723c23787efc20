// lib/auth/replay.ts: the signature time window and the nonce store.
import t from 'tap'
import { join } from 'node:path'
import { openDb } from '../../../lib/db/open.js'
import { NonceStore, checkWindow } from '../../../lib/auth/replay.js'
import { reason } from '../../fixtures/reasons.js'

t.test('time window and nonce store (survives a reopen, prunes expired)', async (t) => {
  t.equal(
    reason(() => checkWindow(1000, 1000)),
    undefined,
  )
  t.equal(
    reason(() => checkWindow(1000 - 301, 1000)),
    'ts_too_old',
  )
  t.equal(
    reason(() => checkWindow(1000 + 31, 1000)),
    'ts_in_future',
  )
  t.equal(
    reason(() => checkWindow(1000 - 10, 1000, { maxAgeSec: 5 })),
    'ts_too_old',
  )
  const file = join(t.testdir(), 'meta.db')
  let db = openDb(file)
  new NonceStore(db).use('pop-a', 'n1', 2000, 1000)
  t.equal(
    reason(() => new NonceStore(db).use('pop-a', 'n1', 2000, 1000)),
    'nonce_replayed',
  )
  new NonceStore(db).use('pop-b', 'n1', 2000, 1000) // per POP
  db.close()
  db = openDb(file)
  t.teardown(() => db.close())
  const store = new NonceStore(db)
  t.equal(
    reason(() => store.use('pop-a', 'n1', 2000, 1001)),
    'nonce_replayed',
    'after a restart',
  )
  t.equal(
    reason(() => store.use('pop-a', '', 2000, 1001)),
    'nonce_invalid',
  )
  store.use('pop-a', 'old', 1500, 1001)
  t.equal(store.pruneExpired(1600), 1)
  t.equal((db.prepare('SELECT count(*) AS n FROM pop_nonces').get() as { n: number }).n, 2)
})
