import t from 'tap'
import { join } from 'node:path'
import { openDb, type Db } from '../../../lib/db/open.js'
import { decodeCursor, encodeCursor, compareCursor } from '../../../lib/store/cursor.js'
import { feedPage, FEED_MAX_LIMIT } from '../../../lib/core-sync/feed.js'
import {
  lagMicros,
  listPopSyncStates,
  recordReport,
  validateReport,
} from '../../../lib/core-sync/pop-state.js'
import { isClavitorError } from '../../../lib/errors.js'
import { Checkpointer } from '../../../lib/core-sync/checkpointer.js'
import { CHAIN_GENESIS, chainNext, chainOver } from '../../../lib/store/chain.js'
import { verifyCheckpoint } from '../../../lib/store/checkpoint.js'
import { generateSigningKey, makeKeyRing, signStatement } from '../../../lib/store/keys.js'

// The feed reads the store's index table; rows are inserted the way the store indexes them,
// each extending the replication log's chain (lib/store/chain.ts).
const chains = new WeakMap<Db, string>()
function addBlob(db: Db, seq: number, created_at: number): void {
  const p0 = (seq.toString(16).padStart(2, '0') + 'ab'.repeat(16)).slice(0, 32)
  const path = `${p0.slice(0, 2)}/${p0}/${String(created_at).padStart(16, '0')}_${'0'.repeat(15)}${seq % 10}.cla`
  const file_sha256 = seq.toString(16).padStart(64, 'e')
  const chain = chainNext(chains.get(db) ?? CHAIN_GENESIS, { seq, created_at, path, file_sha256 })
  chains.set(db, chain)
  db.prepare(
    'INSERT INTO blobs (seq, created_at, p0, path, size, file_size, sha256, key_id, sealed, file_sha256, chain) VALUES (?,?,?,?,?,?,?,?,1,?,?)',
  ).run(seq, created_at, p0, path, 10, 200, 'f'.repeat(64), 'k'.repeat(32), file_sha256, chain)
}

// The core's signer over that index, with a real key: a POP checks the checkpoints with it.
const key = generateSigningKey()
const ring = makeKeyRing([key.publicKey])
function source(db: Db) {
  const store = {
    db,
    storeId: 'st_core',
    generation: 3,
    signStatement: (domain: string, body: Buffer) => ({
      keyId: key.keyId,
      signature: signStatement(key, domain, body),
    }),
  }
  return { db, storeId: 'st_core', generation: 3, checkpoints: new Checkpointer(store) }
}

function fresh(t: { testdir(): string; teardown(fn: () => void): void }): Db {
  const db = openDb(join(t.testdir(), 'meta.db'))
  t.teardown(() => db.close())
  return db
}

t.test('cursor tokens round-trip and order; junk is refused', async (t) => {
  const c = { created_at: 1_700_000_000_000_000, seq: 42 }
  t.same(decodeCursor(encodeCursor(c)), c)
  t.equal(decodeCursor(null), null)
  t.equal(decodeCursor(''), null)
  for (const bad of ['x', 'c1.1', 'c1.-1.2', 'c2.1.2', 'c1.1.2.3', 'c1.99999999999999999.1']) {
    t.throws(() => decodeCursor(bad), { code: 'CLA_ERR_INVALID_CURSOR' }, bad)
  }
  t.equal(compareCursor(null, c), -1)
  t.equal(compareCursor(c, { created_at: c.created_at, seq: 43 }), -1)
  t.equal(compareCursor({ created_at: c.created_at + 1, seq: 1 }, c), 1)
})

t.test('feed pages in (created_at, seq) order with bounded size, next and more', async (t) => {
  const db = fresh(t)
  const src = source(db)
  const empty = feedPage(src, {})
  const genesis = verifyCheckpoint(ring, empty.checkpoint)
  t.match(genesis, {
    store_id: 'st_core',
    generation: 3,
    seq: 0,
    created_at: 0,
    chain: CHAIN_GENESIS,
  })
  t.same(
    { ...empty, checkpoint: undefined },
    {
      store_id: 'st_core',
      generation: 3,
      head: null,
      items: [],
      next: null,
      more: false,
      remaining: 0,
      checkpoint: undefined,
    },
  )
  for (let i = 1; i <= 25; i++) addBlob(db, i, 1_000_000 + i * 10)
  const seen: number[] = []
  let cursor: string | null = null
  let chain = CHAIN_GENESIS
  let pages = 0
  for (;;) {
    const p = feedPage(src, { cursor, limit: 10 })
    pages++
    t.ok(p.items.length <= 10)
    t.same(p.head, { created_at: 1_000_250, seq: 25 })
    t.equal(p.remaining, 25 - seen.length, 'remaining counts from the cursor')
    seen.push(...p.items.map((i) => i.seq))
    const cp = verifyCheckpoint(ring, p.checkpoint)
    const last = p.items[p.items.length - 1]!
    t.match(
      cp,
      { seq: last.seq, created_at: last.created_at },
      'the checkpoint covers the last item',
    )
    t.equal(
      cp.chain,
      chainOver(chain, p.items),
      "the chain over the page's items from the previous checkpoint reaches it",
    )
    chain = cp.chain
    cursor = p.next
    if (!p.more) break
  }
  t.equal(pages, 3)
  t.same(
    seen,
    Array.from({ length: 25 }, (_, i) => i + 1),
  )
  const end = feedPage(src, { cursor })
  t.same(end.items, [])
  t.equal(end.next, cursor, 'an empty page keeps the cursor')
  t.equal(end.more, false)
  t.match(verifyCheckpoint(ring, end.checkpoint), { seq: 25, chain }, 'an empty page: the head')
  const item = feedPage(src, { limit: 1 }).items[0]!
  t.same(Object.keys(item).sort(), [
    'created_at',
    'file_sha256',
    'file_size',
    'key_id',
    'p0',
    'path',
    'seq',
    'sha256',
    'size',
  ])
  t.throws(() => feedPage(src, { limit: FEED_MAX_LIMIT + 1 }), { code: 'CLA_ERR_INVALID_INPUT' })
  t.throws(() => feedPage(src, { limit: 0 }), { code: 'CLA_ERR_INVALID_INPUT' })
  t.throws(() => feedPage(src, { limit: '1x' as unknown as number }), {
    code: 'CLA_ERR_INVALID_INPUT',
  })
})

t.test('reports: state row, lag sample, unknown POP refused, listing', async (t) => {
  const db = fresh(t)
  db.prepare(
    "INSERT INTO pops (id, name, created_at) VALUES ('pop-a', 'A', 1), ('pop-b', 'B', 1)",
  ).run()
  for (let i = 1; i <= 5; i++) addBlob(db, i, 5_000_000 + i * 1_000_000)
  t.equal(lagMicros(db, null), null, 'no cursor: the lag is unknown (pop-state.test.ts)')
  const r1 = recordReport(
    db,
    'pop-a',
    validateReport({ cursor: encodeCursor({ created_at: 8_000_000, seq: 3 }), ok: true, blobs: 3 }),
    100,
  )
  t.equal(r1.lag_us, 2_000_000)
  t.equal(r1.last_success_at, 100)
  t.equal(r1.blobs, 3)
  const r2 = recordReport(
    db,
    'pop-a',
    validateReport({
      cursor: encodeCursor({ created_at: 8_000_000, seq: 3 }),
      ok: false,
      error: { code: 'CLA_ERR_SYNC_NETWORK', message: 'cut' },
    }),
    200,
  )
  t.equal(r2.last_success_at, 100, 'a failure keeps the last success')
  t.equal(r2.last_error, 'CLA_ERR_SYNC_NETWORK: cut')
  t.equal(r2.last_error_at, 200)
  t.equal(r2.blobs, 3, 'blobs kept when not reported')
  const r3 = recordReport(
    db,
    'pop-a',
    validateReport({ cursor: encodeCursor({ created_at: 10_000_000, seq: 5 }), ok: true }),
    300,
  )
  t.equal(r3.lag_us, 0)
  t.equal(r3.last_error, null, 'a clean success clears the error (pop-state.test.ts)')
  t.equal(r3.last_error_at, 200, '…its time stays as when it last failed')
  const samples = db
    .prepare("SELECT at, lag_us FROM pop_lag_samples WHERE pop_id = 'pop-a' ORDER BY at")
    .all()
  t.same(samples, [
    { at: 100, lag_us: 2_000_000 },
    { at: 200, lag_us: 2_000_000 },
    { at: 300, lag_us: 0 },
  ])
  t.throws(() => recordReport(db, 'pop-x', { cursor: null, ok: true }), {
    code: 'CLA_ERR_SYNC_UNKNOWN_POP',
  })
  db.prepare("UPDATE pops SET removed_at = 5 WHERE id = 'pop-b'").run()
  t.throws(
    () => recordReport(db, 'pop-b', { cursor: null, ok: true }),
    { code: 'CLA_ERR_SYNC_UNKNOWN_POP' },
    'removed POP',
  )
  const list = listPopSyncStates(db)
  t.equal(list.length, 2)
  t.equal(list[0]!.id, 'pop-a')
  t.equal(list[0]!.sync!.lag_us, 0)
  t.equal(list[1]!.sync, null)
  for (const bad of [
    null,
    [],
    { cursor: 1, ok: true },
    { cursor: null },
    { cursor: 'zz', ok: true },
    { cursor: null, ok: true, blobs: -1 },
    { cursor: null, ok: false, error: 'x' },
  ]) {
    try {
      validateReport(bad)
      t.fail('accepted ' + JSON.stringify(bad))
    } catch (err) {
      t.ok(isClavitorError(err) && err.status === 400, 'refused ' + JSON.stringify(bad))
    }
  }
})
