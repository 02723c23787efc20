// lib/store/blob-index.ts: the reads of the store's index that the rest of the tree uses.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { BlobStore } from '../../../lib/store/index.js'
import { blobIndex } from '../../../lib/store/blob-index.js'

const root = mkdtempSync(join(tmpdir(), 'clavitor-index-'))
t.teardown(() => {
  spawnSync('chattr', ['-R', '-i', '-a', root])
  rmSync(root, { recursive: true, force: true })
})

t.test('counts, lookups, ranges and the feed order', async (t) => {
  const store = await BlobStore.init({ dataDir: join(root, 's'), protection: 'off' })
  t.teardown(() => store.close())
  const ix = store.index
  t.equal(blobIndex(store.db), ix, 'one index per database')
  t.same(ix.totals(), { count: 0, bytes: 0 })
  t.equal(ix.head(), null)
  t.same(ix.createdRange(), { lo: null, hi: null })
  const p0a = 'aa'.repeat(16)
  const p0b = 'bb'.repeat(16)
  const a1 = await store.put(p0a, Buffer.from('one'))
  const b1 = await store.put(p0b, Buffer.from('two'))
  const a2 = await store.put(p0a, Buffer.from('three'))
  t.equal(ix.count(), 3)
  t.same(ix.totals(), { count: 3, bytes: a1.file_size + b1.file_size + a2.file_size })
  t.same(ix.bySeq(b1.seq), b1)
  t.same(ix.byPath(a1.path), a1)
  t.equal(ix.byPath('nope'), undefined)
  t.same(ix.latest(p0a), a2, 'the newest version')
  t.equal(ix.holdsUnder(`aa/${p0a}`), true)
  t.equal(ix.holdsUnder(`aa/${'a'.repeat(31)}%`), false, 'LIKE wildcards are literal')
  t.same(ix.paths(), [a1.path, a2.path, b1.path].sort())
  t.same([...ix.files()].length, 3)
  t.same(ix.createdRange(), { lo: a1.created_at, hi: a2.created_at })
  t.same(ix.head(), { created_at: a2.created_at, seq: a2.seq })
  const feed = ix.feedAfter(null, 10)
  t.same(
    feed.map((r) => r.seq),
    [a1.seq, b1.seq, a2.seq],
    'feed order',
  )
  t.same(Object.keys(feed[0]!), [
    'path',
    'p0',
    'size',
    'file_size',
    'sha256',
    'key_id',
    'created_at',
    'seq',
    'file_sha256',
  ])
  t.same(
    ix.feedAfter(a1, 10).map((r) => r.seq),
    [b1.seq, a2.seq],
  )
  t.equal(ix.countAfter(a1), 2)
  t.equal(ix.countAfter(null), 3)
  const h = ix.histogram(a1.created_at, a2.created_at - a1.created_at + 1)
  t.same(h, [{ b: 0, n: 3, bytes: a1.file_size + b1.file_size + a2.file_size }])
})
