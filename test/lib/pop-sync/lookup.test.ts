// lib/pop-sync/lookup.ts: the latest WL3 of a P0, checked against its index row, cached
// until the index changes; a damaged file is refused and reported, never served.
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { BlobStore } from '../../../lib/store/index.js'
import { Wl3Lookup } from '../../../lib/pop-sync/lookup.js'

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
  await t.rejects(lookup.latest(p0), { code: 'CLA_ERR_NOT_FOUND' })
  await t.rejects(lookup.latest('00'.repeat(32)), { code: 'CLA_ERR_P0_RESERVED' })
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
  await t.rejects(lookup.latest(p0))
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
  const cost = buf.length + 200
  const lookup = new Wl3Lookup(store, { maxBytes: 2 * cost })
  await t.rejects(lookup.latest(bad, { signature: true }), { code: 'CLA_ERR_SYNC_DAMAGED' })
  await lookup.latest(b)
  await lookup.latest(c)
  const misses = lookup.misses
  await lookup.latest(b)
  await lookup.latest(c)
  t.equal(lookup.misses, misses, 'both answers stayed cached: the refused file took no room')
})
