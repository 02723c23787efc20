// lib/pop-sync/lookup.ts: the latest WL3 of a P0, checked against its index row, cached
// until a newer blob of that P0 is published; a damaged file is refused and reported, never served.
import { spawnSync } from 'node:child_process'
import {
  appendFileSync,
  chmodSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
  readFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import t from 'tap'
import { BlobStore } from '../../../lib/store/index.js'
import { DEFAULT_CACHE_BYTES, ENTRY_OVERHEAD, Wl3Lookup } from '../../../lib/pop-sync/lookup.js'
import { openTestPop, randomP0, startCore, tempDir } from '../../fixtures/sync.js'

const root = mkdtempSync(join(tmpdir(), 'clavitor-lookup-'))
t.teardown(() => {
  spawnSync('chattr', ['-R', '-i', '-a', root])
  rmSync(root, { recursive: true, force: true })
})

t.test('latest, cache, invalidation on a new version, damage', async (t) => {
  const store = await BlobStore.init({ dataDir: join(root, 's'), protection: 'off' })
  t.teardown(() => store.close())
  const p0 = 'cd'.repeat(16)
  const damaged: string[] = []
  const lookup = new Wl3Lookup(store, { onDamaged: (info) => damaged.push(info.path) })
  t.throws(() => lookup.latest(p0), { code: 'CLA_ERR_NOT_FOUND' })
  t.throws(() => lookup.latest('00'.repeat(32)), { code: 'CLA_ERR_P0_RESERVED' })
  await store.put(p0, Buffer.from('v1'))
  const a = await lookup.latest(p0)
  t.equal(a.payload.toString(), 'v1')
  t.match(a.etag, /^"[0-9a-f]{64}"$/)
  await lookup.latest(p0)
  t.equal(lookup.hits, 1, 'the second answer comes from the cache')
  const v2 = await store.put(p0, Buffer.from('v2'))
  t.equal((await lookup.latest(p0)).payload.toString(), 'v2', 'a new version drops the cache')
  t.equal((await lookup.latest(p0, { signature: true })).signatureChecked, true)

  // flip a byte of the payload in place (same size): refused, reported, not served
  const file = join(store.root, v2.path)
  chmodSync(file, 0o644)
  const buf = readFileSync(file)
  buf[buf.length - 70] = buf[buf.length - 70]! ^ 0xff
  writeFileSync(file, buf)
  lookup.invalidate()
  t.throws(() => lookup.latest(p0), { code: 'CLA_ERR_SYNC_DAMAGED' })
  t.same(damaged, [v2.path], 'reported for repair')
  t.same(
    lookup.versions(p0).map((v) => v.seq),
    [v2.seq - 1, v2.seq],
    'versions from the index',
  )
})

// A file whose signature fails on the .cla route leaves the cache: its bytes must leave the
// cache's count with it, or the cache evicts good answers early (it held room for two here).
t.test('a signature failure frees its room in the cache', async (t) => {
  const store = await BlobStore.init({ dataDir: join(root, 'bytes'), protection: 'off' })
  t.teardown(() => store.close())
  const [bad, b, c] = ['b1', 'b2', 'b3'].map((x) => x.repeat(16)) as [string, string, string]
  const payload = Buffer.alloc(1000, 7)
  const badInfo = await store.put(bad, payload)
  await store.put(b, payload)
  await store.put(c, payload)
  // one signature byte flipped: structure and payload sha256 still match the index row
  const file = join(store.root, badInfo.path)
  chmodSync(file, 0o644)
  const buf = readFileSync(file)
  buf[buf.length - 1] = buf[buf.length - 1]! ^ 0x01
  writeFileSync(file, buf)
  const cost = buf.length + ENTRY_OVERHEAD
  const lookup = new Wl3Lookup(store, { maxBytes: 2 * cost })
  t.throws(() => lookup.latest(bad, { signature: true }), { code: 'CLA_ERR_SYNC_DAMAGED' })
  await lookup.latest(b)
  await lookup.latest(c)
  const misses = lookup.misses
  await lookup.latest(b)
  await lookup.latest(c)
  t.equal(lookup.misses, misses, 'both answers stayed cached: the refused file took no room')
})

t.test('the cache bound: validated, 0 caches nothing, stats() counts what it holds', async (t) => {
  const store = await BlobStore.init({ dataDir: join(root, 'bound'), protection: 'off' })
  t.teardown(() => store.close())
  for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])
    t.throws(() => new Wl3Lookup(store, { maxBytes: bad }), { code: 'CLA_ERR_INVALID_OPTION' })
  const p0 = 'c1'.repeat(16)
  const info = await store.put(p0, Buffer.alloc(500, 1))
  const none = new Wl3Lookup(store, { maxBytes: 0 })
  t.teardown(() => none.close())
  none.latest(p0)
  none.latest(p0)
  t.match(none.stats(), { bytes: 0, maxBytes: 0, answers: 0, hits: 0, misses: 2 })
  t.throws(() => none.latest('c2'.repeat(16)), { code: 'CLA_ERR_NOT_FOUND' })
  t.match(
    none.stats(),
    { misses: 2, notFound: 1 },
    'an unknown P0 is not a miss: no cache could answer it',
  )
  const one = new Wl3Lookup(store)
  t.teardown(() => one.close())
  t.equal(one.stats().maxBytes, DEFAULT_CACHE_BYTES)
  one.latest(p0)
  one.latest(p0)
  t.same(one.stats(), {
    bytes: info.file_size + ENTRY_OVERHEAD,
    maxBytes: DEFAULT_CACHE_BYTES,
    answers: 1,
    hits: 1,
    misses: 1,
    notFound: 0,
  })
})

// Issue 18: POPs pull within seconds of each core write, so the cache may not be dropped on
// every database change (any audit row or sync-state write did that). A newer blob of a
// P0 drops that P0's answer only; a commit by another connection still drops everything.
t.test('the cache follows publications per P0, not every database change', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const [a, b] = [randomP0(), randomP0()] as [string, string]
  await core.addBlobs(2, [a, b])
  const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-cache')
  await pop.sync.run()
  const { lookup } = pop
  const oldA = lookup.latest(a)
  lookup.latest(b)
  t.equal(lookup.misses, 2)

  // a pull that seals a new version of A (and writes the cursor, checkpoint, run state)
  const [newA] = await core.addBlobs(1, [a])
  t.equal((await pop.sync.run()).sealed, 1)
  const after = lookup.latest(a)
  t.equal(after.info.seq, newA!.seq, 'the new version of A is answered at once')
  t.not(after.etag, oldA.etag)
  t.equal(lookup.misses, 3, 'A was read again')
  const hits = lookup.hits
  lookup.latest(b)
  t.equal(lookup.hits, hits + 1, 'B stayed cached across the pull')

  // this process's other writes: an audit row, sync state
  pop.sync.audit({ kind: 'sync.alarm', actor: 'pop-cache', outcome: 'alarm', reason: 'test' })
  pop.db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('test.k', 'v')").run()
  lookup.latest(a)
  lookup.latest(b)
  t.equal(lookup.misses, 3, 'an audit row or a state write does not flush the cache')
  t.equal(lookup.hits, hits + 3)

  // a commit by another connection (a CLI `pop sync --once` beside `pop run`)
  const other = new Database(join(dir, 'pop', 'meta.db'))
  t.teardown(() => other.close())
  other.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('test.k', 'w')").run()
  // the counters are read once per turn of the event loop
  await new Promise((r) => setImmediate(r))
  lookup.latest(b)
  t.equal(lookup.misses, 4, "another connection's commit drops the cache")
})

t.test('a file longer than its index row is refused', async (t) => {
  const store = await BlobStore.init({ dataDir: join(root, 'long'), protection: 'off' })
  t.teardown(() => store.close())
  const p0 = 'ef'.repeat(16)
  const info = await store.put(p0, Buffer.from('payload'))
  const file = join(store.root, info.path)
  chmodSync(file, 0o644)
  appendFileSync(file, Buffer.from([0]))
  const damaged: unknown[] = []
  const lookup = new Wl3Lookup(store, { onDamaged: (_i, err) => damaged.push(err) })
  t.throws(() => lookup.latest(p0), { code: 'CLA_ERR_SYNC_DAMAGED' })
  t.match(damaged, [{ code: 'CLA_ERR_HEADER_MISMATCH', message: /longer/ }])
})

t.test('prefetch fills the cache with the latest answers, up to its size', async (t) => {
  const store = await BlobStore.init({ dataDir: join(root, 'prefetch'), protection: 'off' })
  t.teardown(() => store.close())
  const [a, b, c, d] = ['a1', 'a2', 'a3', 'a4'].map((x) => x.repeat(16)) as [
    string,
    string,
    string,
    string,
  ]
  const payload = Buffer.alloc(1000, 1)
  await store.put(a, payload)
  const newA = await store.put(a, Buffer.alloc(1000, 2))
  await store.put(b, payload)
  const infoC = await store.put(c, payload)
  await store.put('0'.repeat(64), Buffer.from('{"anchor":1}')) // never served: not prefetched
  // C's file damaged: reported, skipped
  const file = join(store.root, infoC.path)
  chmodSync(file, 0o644)
  const buf = readFileSync(file)
  buf[buf.length - 70] = buf[buf.length - 70]! ^ 0xff
  writeFileSync(file, buf)
  const damaged: string[] = []
  const lookup = new Wl3Lookup(store, { onDamaged: (info) => damaged.push(info.path) })
  t.equal(await lookup.prefetch(1), 2, 'A (its latest only) and B')
  t.same(damaged, [infoC.path])
  t.equal(lookup.latest(a).info.seq, newA.seq)
  lookup.latest(b)
  t.equal(lookup.misses, 0, 'both answered from the cache')
  t.equal(lookup.cachedAnswers, 2)

  const small = new Wl3Lookup(store, { maxBytes: buf.length + ENTRY_OVERHEAD })
  await store.put(d, payload)
  t.equal(await small.prefetch(), 1, 'stops when the cache is full')
  t.equal(small.cachedAnswers, 1)
  small.close()
  t.equal(await small.prefetch(), 0, 'nothing after close')
})

t.test('a full cache lets go of an answer not asked for since it came in', async (t) => {
  const store = await BlobStore.init({ dataDir: join(root, 'clock'), protection: 'off' })
  t.teardown(() => store.close())
  const [a, b, c] = ['c1', 'c2', 'c3'].map((x) => x.repeat(16)) as [string, string, string]
  const payload = Buffer.alloc(1000, 3)
  const info = await store.put(a, payload)
  await store.put(b, payload)
  await store.put(c, payload)
  const lookup = new Wl3Lookup(store, { maxBytes: 2 * (info.file_size + ENTRY_OVERHEAD) })
  lookup.latest(a)
  lookup.latest(b)
  lookup.latest(a) // A asked for again: kept over B
  lookup.latest(c)
  t.equal(lookup.cachedAnswers, 2)
  const misses = lookup.misses
  lookup.latest(a)
  lookup.latest(c)
  t.equal(lookup.misses, misses, 'A and C cached')
  lookup.latest(b)
  t.equal(lookup.misses, misses + 1, 'B went')
})
