import t from 'tap'
import {
  existsSync,
  readdirSync,
  readFileSync,
  writeFileSync,
  mkdirSync,
  copyFileSync,
  rmSync,
  unlinkSync,
  mkdtempSync,
  symlinkSync,
  renameSync,
} from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import nacl from 'tweetnacl'
import { BlobStore, Sealer, decodeCla, syncfs, type BlobInfo } from '../../../lib/store/index.js'
import { dirtyBytes, parseDirtyBytes } from '../../../lib/store/dirty.js'
import { infoOf } from '../../../lib/store/checks.js'
import { openDb } from '../../../lib/db/open.js'
import { getMeta } from '../../../lib/db/meta.js'
import { tempData, manualClock, P0A, P0B, P0C } from '../../fixtures/store/helpers.js'

const P0D = 'd4'.repeat(16)

const quiet = { onWarning: () => {} }

t.test('init makes the layout and identity; open refuses an uninitialised folder', async (t) => {
  const data = tempData(t)
  await t.rejects(BlobStore.open({ dataDir: data }), { code: 'CLA_ERR_STORE_NOT_INITIALIZED' })
  const s = await BlobStore.init({ dataDir: data, protection: 'off' })
  t.equal(readdirSync(join(data, 'store')).length, 256)
  t.ok(existsSync(join(data, 'store', '00')) && existsSync(join(data, 'store', 'ff')))
  t.equal(readFileSync(join(data, 'keys', 'signing.key')).length, 32)
  t.equal(readFileSync(join(data, 'keys', 'signing.pub')).length, 32)
  t.match(s.storeId, /^[0-9a-f]{32}$/)
  t.equal(s.generation, 1)
  t.equal(getMeta(s.db, 'store_id'), s.storeId)
  t.equal(getMeta(s.db, 'store_generation'), '1')
  t.equal(s.role, 'core')
  t.match(s.keyId, /^[0-9a-f]{32}$/)
  const id = s.storeId
  const pub = s.publicKey
  await s.close()
  const again = await BlobStore.init({ dataDir: data, protection: 'off' })
  t.equal(again.storeId, id, 'init is idempotent')
  t.same(again.publicKey, pub, 'the signing key is never replaced')
  await again.close()
  await t.rejects(BlobStore.open({ dataDir: data, protection: 'bogus' as never }), {
    code: 'CLA_ERR_INVALID_OPTION',
  })
  // an empty data folder would mean the working directory: refused, nothing written
  for (const dataDir of ['', '  ']) {
    await t.rejects(BlobStore.init({ dataDir }), { code: 'CLA_ERR_INVALID_OPTION' })
    await t.rejects(BlobStore.open({ dataDir }), { code: 'CLA_ERR_INVALID_OPTION' })
  }
  t.notOk(existsSync(join(process.cwd(), 'store.json')), 'nothing made in the working directory')
})

t.test('put, latest, versions, verified reads', async (t) => {
  const data = tempData(t)
  const s = await BlobStore.init({ dataDir: data })
  t.teardown(() => s.close())
  const a1 = await s.put(P0A, Buffer.from('first'))
  const a2 = await s.put(P0A, Buffer.from('second'))
  const b1 = await s.put(P0B, Buffer.alloc(0))
  t.match(a1, {
    seq: 1,
    p0: P0A,
    size: 5,
    sha256: /^[0-9a-f]{64}$/,
    key_id: s.keyId,
  })
  t.match(a1.path, new RegExp(`^a1/${P0A}/\\d{16}_[0-9a-f]{16}\\.cla$`))
  t.equal(a1.file_size, readFileSync(join(data, 'store', a1.path)).length)
  t.ok(a2.seq > a1.seq && a2.created_at > a1.created_at)
  t.same(s.latest(P0A), a2)
  t.same(s.versions(P0A), [a1, a2])
  t.same(s.versions(P0C), [])
  t.equal(s.latest(P0C), undefined)
  t.equal((await s.readPayload(a1)).toString(), 'first')
  t.equal((await s.readPayload(b1)).length, 0)
  const file = await s.readFile(a2)
  const d = decodeCla(file)
  t.ok(
    nacl.sign.detached.verify(d.signed, d.signature, s.publicKey!),
    'tweetnacl verifies a stored file',
  )
  t.same(s.bySeq(a2.seq), a2)
  t.throws(() => s.latest('ZZ'), { code: 'CLA_ERR_INVALID_P0' })
  await t.rejects(s.readPayload({ ...a1, seq: 99 }), { code: 'CLA_ERR_HEADER_MISMATCH' })
  await t.rejects(s.readPayload({ ...a1, path: '../x' }), { code: 'CLA_ERR_INVALID_INPUT' })
})

// put builds its index row from what it encoded, without decoding the file again: the row
// must be exactly what the stored file's header says (lib/store/writer.ts)
t.test("a put's BlobInfo equals infoOf(decodeCla(file)) of the stored file", async (t) => {
  const data = tempData(t)
  const s = await BlobStore.init({ dataDir: data, protection: 'off' })
  t.teardown(() => s.close())
  const puts = await Promise.all([
    s.put(P0A, Buffer.from('one')),
    s.put(P0B, Buffer.alloc(0)),
    s.put('ef'.repeat(64), Buffer.alloc(100_000, 7)),
    s.put(P0A, Buffer.from('two')),
  ])
  for (const info of puts) {
    const file = readFileSync(join(data, 'store', info.path))
    t.strictSame(info, infoOf(decodeCla(file), info.path), info.path)
  }
  t.strictSame(s.versions(P0A), [puts[0], puts[3]], 'and the index rows are the same')
})

t.test('bad input writes nothing', async (t) => {
  const data = tempData(t)
  const s = await BlobStore.init({ dataDir: data, protection: 'off', maxPayloadBytes: 10 })
  t.teardown(() => s.close())
  for (const p0 of ['../../etc', 'A1'.repeat(16), 'a1'.repeat(8), 'a1'.repeat(16) + '/', '']) {
    await t.rejects(s.put(p0, Buffer.from('x')), { code: 'CLA_ERR_INVALID_P0' }, JSON.stringify(p0))
  }
  await t.rejects(s.put(P0A, Buffer.alloc(11)), { code: 'CLA_ERR_PAYLOAD_TOO_LARGE' })
  await t.rejects(s.put(P0A, 'text' as never), { code: 'CLA_ERR_INVALID_INPUT' })
  t.equal(s.status().blobs, 0)
  t.same(readdirSync(join(data, 'store', 'a1')), [])
  t.same(readdirSync(join(data, 'staging')), [])
})

t.test(
  'concurrent puts are group-committed with strictly increasing seq and created_at',
  async (t) => {
    const data = tempData(t)
    const s = await BlobStore.init({ dataDir: data, maxBatch: 64 })
    t.teardown(() => s.close())
    const p0s = [P0A, P0B, P0C]
    const infos = await Promise.all(
      Array.from({ length: 300 }, (_, i) => s.put(p0s[i % 3]!, Buffer.from(`payload ${i}`))),
    )
    const bySeq = [...infos].sort((a, b) => a.seq - b.seq)
    t.same(
      infos.map((i) => i.seq),
      Array.from({ length: 300 }, (_, i) => i + 1),
      'seq follows call order',
    )
    for (let i = 1; i < bySeq.length; i++) t.ok(bySeq[i]!.created_at > bySeq[i - 1]!.created_at)
    t.equal(s.status().blobs, 300)
    t.same(readdirSync(join(data, 'staging')), [], 'no temp files left')
    const report = await s.verify()
    t.ok(report.ok, 'verify is clean')
  },
)

t.test('created_at stays strictly increasing when the clock stalls or steps back', async (t) => {
  const data = tempData(t)
  const clock = manualClock(1_800_000_000_000_000)
  const s = await BlobStore.init({
    dataDir: data,
    protection: 'off',
    clock: clock.clock,
  })
  t.teardown(() => s.close())
  const got: BlobInfo[] = []
  // many writes in the same millisecond (the clock does not move at all)
  got.push(
    ...(await Promise.all(Array.from({ length: 50 }, () => s.put(P0A, Buffer.from('same ms'))))),
  )
  // the wall clock steps back by an hour
  clock.now -= 3_600_000_000
  for (let i = 0; i < 20; i++) got.push(await s.put(P0B, Buffer.from('after step back')))
  clock.now += 7_200_000_000
  got.push(await s.put(P0C, Buffer.from('clock ahead again')))
  for (let i = 1; i < got.length; i++) {
    t.ok(got[i]!.created_at > got[i - 1]!.created_at, `created_at ${i}`)
    t.ok(got[i]!.seq > got[i - 1]!.seq, `seq ${i}`)
  }
  t.equal(got[0]!.created_at, 1_800_000_000_000_000)
  t.equal(got[49]!.created_at, 1_800_000_000_000_049)
  t.equal(got[50]!.created_at, 1_800_000_000_000_050, 'clamped, not sent back an hour')
  t.equal(got[70]!.created_at, clock.now)
  // a reopened store continues above the newest indexed created_at
  await s.close()
  clock.now -= 10_000_000_000
  const s2 = await BlobStore.open({ dataDir: data, protection: 'off', clock: clock.clock })
  const next = await s2.put(P0A, Buffer.from('after reopen'))
  t.ok(next.created_at > got[70]!.created_at)
  t.equal(next.seq, 72)
  await s2.close()
})

t.test('changesAfter pages never skip or repeat, also while writes go on', async (t) => {
  const data = tempData(t)
  const clock = manualClock(1_800_000_000_000_000)
  const s = await BlobStore.init({
    dataDir: data,
    protection: 'off',
    clock: clock.clock,
  })
  t.teardown(() => s.close())
  for (let i = 0; i < 23; i++) await s.put(i % 2 ? P0A : P0B, Buffer.from(`v${i}`))
  clock.now -= 1_000_000 // step back: must not reorder the feed
  const seen: number[] = []
  let cursor: string | null = null
  let rounds = 0
  for (;;) {
    const page = s.changesAfter(cursor, 5)
    seen.push(...page.items.map((i) => i.seq))
    if (rounds++ < 3)
      await Promise.all([s.put(P0C, Buffer.from('during')), s.put(P0A, Buffer.from('during'))])
    cursor = page.next
    if (!page.more && page.items.length < 5) {
      const tail = s.changesAfter(cursor, 5)
      if (tail.items.length === 0) break
      seen.push(...tail.items.map((i) => i.seq))
      cursor = tail.next
    }
  }
  t.same(
    seen,
    Array.from({ length: 29 }, (_, i) => i + 1),
    'every blob exactly once, in order',
  )
  const empty = s.changesAfter(cursor, 5)
  t.same(empty, { items: [], next: cursor, more: false }, 'an empty page keeps the cursor')
  t.same(s.changesAfter(null, 100).items.length, 29)
  t.throws(() => s.changesAfter('garbage', 5), { code: 'CLA_ERR_INVALID_CURSOR' })
  t.throws(() => s.changesAfter(null, 0), { code: 'CLA_ERR_INVALID_INPUT' })
})

t.test(
  'verify finds missing, corrupt, unindexed; rebuildIndex picks up unindexed files',
  async (t) => {
    const data = tempData(t)
    const s = await BlobStore.init({ dataDir: data, protection: 'off' })
    t.teardown(() => s.close())
    const infos: BlobInfo[] = []
    for (let i = 0; i < 6; i++) infos.push(await s.put(i < 3 ? P0A : P0B, Buffer.from(`blob ${i}`)))
    t.ok((await s.verify()).ok)
    // unindexed: rows removed, files stay
    s.db.prepare('DELETE FROM blobs WHERE seq IN (?, ?)').run(infos[1]!.seq, infos[4]!.seq)
    // corrupt: one payload byte flipped
    const cpath = join(data, 'store', infos[2]!.path)
    const bytes = readFileSync(cpath)
    bytes[bytes.length - 70]! ^= 1
    writeFileSync(cpath, bytes)
    // missing: file removed
    unlinkSync(join(data, 'store', infos[5]!.path))
    // garbage with a blob-like name but wrong key/shape
    const r = await s.verify()
    t.notOk(r.ok)
    t.same(r.missing, [infos[5]!.path])
    t.same(r.unindexed, [infos[1]!.path, infos[4]!.path].sort())
    t.same(r.recoverable, r.unindexed, 'valid files without a row: a writer’s, not damage')
    t.same(
      r.corrupt.map((c) => [c.path, c.code]),
      [[infos[2]!.path, 'CLA_ERR_BAD_HASH']],
    )
    // damage aside, recoverable files alone leave the store "ok"
    const alone = await BlobStore.init({ dataDir: tempData(t), protection: 'off' })
    t.teardown(() => alone.close())
    const one = await alone.put(P0A, Buffer.from('in flight'))
    alone.db.prepare('DELETE FROM blobs WHERE seq = ?').run(one.seq)
    const v = await alone.verify()
    t.same([v.ok, v.recoverable, v.unindexed], [true, [one.path], [one.path]])
    t.equal(r.sealChecked, false)
    const rb = await s.rebuildIndex()
    t.match(rb, { indexed: 2, alreadyIndexed: 3, scanned: 5, corrupt: [], conflicts: [] })
    t.same(s.bySeq(infos[1]!.seq), infos[1], 'the row comes back identical, from the file alone')
    t.same(s.bySeq(infos[4]!.seq), infos[4])
    const after = await s.verify()
    t.same(after.unindexed, [])
    t.equal(after.corrupt.length, 1)
    await t.rejects(s.readPayload(infos[2]!), { code: 'CLA_ERR_BAD_HASH' })
    await t.rejects(s.readPayload(infos[5]!), { code: 'CLA_ERR_NOT_FOUND' })
  },
)

t.test('a lost meta.db is rebuilt from the files before the next write', async (t) => {
  const data = tempData(t)
  const s = await BlobStore.init({ dataDir: data })
  const a = await s.put(P0A, Buffer.from('one'))
  const b = await s.put(P0B, Buffer.from('two'))
  await s.close()
  for (const f of readdirSync(data)) if (f.startsWith('meta.db')) rmSync(join(data, f))
  const s2 = await BlobStore.open({ dataDir: data })
  t.teardown(() => s2.close())
  const c = await s2.put(P0A, Buffer.from('three'))
  t.same(s2.versions(P0A), [a, c])
  t.same(s2.latest(P0B), b)
  t.ok(c.seq > b.seq)
  t.ok((await s2.verify()).ok)
})

t.test('one writer per data folder: a second live writer gets CLA_ERR_STORE_LOCKED', async (t) => {
  const data = tempData(t)
  const s1 = await BlobStore.init({ dataDir: data, protection: 'off' })
  await s1.put(P0A, Buffer.from('x'))
  const s2 = await BlobStore.open({ dataDir: data, protection: 'off' })
  await t.rejects(s2.put(P0A, Buffer.from('y')), { code: 'CLA_ERR_STORE_LOCKED' })
  t.equal(s2.status().writer_pid, process.pid, 'status names the writer')
  t.equal(s2.latest(P0A)!.seq, 1, 'readers work beside the writer')
  await s1.close()
  const y = await s2.put(P0A, Buffer.from('y'))
  t.equal(y.seq, 2)
  await s2.close()
  await t.rejects(s2.put(P0A, Buffer.from('z')), { code: 'CLA_ERR_STORE_CLOSED' })
  t.throws(() => s2.status(), { code: 'CLA_ERR_STORE_CLOSED' })
})

t.test('a POP store ingests verified core files and refuses anything else', async (t) => {
  const core = await BlobStore.init({ dataDir: tempData(t), protection: 'off' })
  t.teardown(() => core.close())
  const popData = tempData(t)
  await t.rejects(BlobStore.init({ dataDir: popData, role: 'pop' }), {
    code: 'CLA_ERR_INVALID_OPTION',
  })
  const pop = await BlobStore.init({
    dataDir: popData,
    role: 'pop',
    trustKeys: [core.exportPublicKey().publicKey],
  })
  t.teardown(() => pop.close())
  t.equal(pop.keyId, null)
  t.same([...pop.trustedKeys.keys()], [core.keyId])
  await t.rejects(pop.put(P0A, Buffer.from('x')), { code: 'CLA_ERR_STORE_NO_SIGNING_KEY' })
  const infos = [
    await core.put(P0A, Buffer.from('a1')),
    await core.put(P0B, Buffer.from('b1')),
    await core.put(P0A, Buffer.from('a2')),
  ]
  const inbox = join(popData, '..', 'inbox')
  const stage = (i: BlobInfo) => {
    const f = join(inbox, i.path.replaceAll('/', '_'))
    mkdirSync(inbox, { recursive: true })
    copyFileSync(join(core.root, i.path), f)
    return f
  }
  const got = await pop.ingest(
    infos.map((i) => ({ file: stage(i), expect: i })),
    {
      inTransaction: (db) =>
        db.prepare("INSERT INTO meta (key, value) VALUES ('test_cursor', 'c3')").run(),
    },
  )
  t.same(got, infos)
  t.same(pop.changesAfter(null, 10).items, infos, 'same rows, same cursor space as the core')
  t.equal(getMeta(pop.db, 'test_cursor'), 'c3', 'inTransaction ran in the same transaction')
  t.same(readdirSync(inbox), [], 'staged names are consumed')
  t.equal((await pop.readPayload(infos[2]!)).toString(), 'a2')
  // the same files again: already there with identical bytes is success
  t.same(await pop.ingest(infos.map((i) => ({ file: stage(i), expect: i }))), infos)
  t.equal(pop.status().blobs, 3)

  const more = await core.put(P0C, Buffer.from('c1'))
  // a tampered file: refused, named, nothing visible
  const bad = stage(more)
  const bytes = readFileSync(bad)
  bytes[bytes.length - 1]! ^= 1
  writeFileSync(bad, bytes)
  await t.rejects(pop.ingest([{ file: bad, expect: more }]), {
    code: 'CLA_ERR_BAD_SIGNATURE',
    message: bad,
  })
  t.notOk(existsSync(join(pop.root, more.path)), 'nothing unverified became visible')
  t.equal(pop.latest(P0C), undefined)
  // header differs from the feed
  await t.rejects(pop.ingest([{ file: stage(more), expect: { ...more, seq: 999 } }]), {
    code: 'CLA_ERR_HEADER_MISMATCH',
  })
  await t.rejects(pop.ingest([{ file: stage(more), expect: { ...more, path: infos[0]!.path } }]), {
    code: 'CLA_ERR_HEADER_MISMATCH',
  })
  // signed by a key the POP does not trust
  const stranger = await BlobStore.init({ dataDir: tempData(t), protection: 'off' })
  const alien = await stranger.put(P0C, Buffer.from('alien'))
  const alienFile = join(inbox, 'alien.cla')
  copyFileSync(join(stranger.root, alien.path), alienFile)
  await t.rejects(pop.ingest([{ file: alienFile, expect: alien }]), { code: 'CLA_ERR_UNKNOWN_KEY' })
  await stranger.close()
  t.equal(pop.status().blobs, 3)
  // and the good one goes in
  rmSync(inbox, { recursive: true, force: true })
  t.same(await pop.ingest([{ file: stage(more), expect: more }]), [more])
  t.ok((await pop.verify()).ok)
  // trust can also be added later
  t.equal(pop.trustKey(stranger.exportPublicKey().publicKey), stranger.keyId)
  t.ok(existsSync(join(popData, 'keys', 'trusted', `${stranger.keyId}.pub`)))
})

t.test('protection modes and status', async (t) => {
  const off = await BlobStore.init({ dataDir: tempData(t), protection: 'off' })
  t.teardown(() => off.close())
  const i = await off.put(P0A, Buffer.from('x'))
  t.match(off.status().protection, { mode: 'off', sealing: false })
  t.equal(off.status().unsealed_rows, 1)
  t.notMatch(
    execFileSync('lsattr', ['-d', join(off.root, i.path)])
      .toString()
      .split(' ')[0],
    /i/,
  )

  const isRoot = process.getuid?.() === 0
  const warnings: string[] = []
  const be = await BlobStore.init({ dataDir: tempData(t), onWarning: (m) => warnings.push(m) })
  t.teardown(() => be.close())
  const st = be.status()
  t.equal(st.protection.mode, 'best-effort')
  if (!st.protection.honoured) {
    t.equal(warnings.length, 1, 'best-effort warns once when the fs cannot seal')
    t.skip('sealing checks need root on ext4', () => {})
    return
  }
  t.same(warnings, [])
  t.ok(isRoot)
  const j = await be.put(P0A, Buffer.from('x'))
  t.match(
    execFileSync('lsattr', ['-d', join(be.root, j.path)])
      .toString()
      .split(' ')[0],
    /i/,
  )
  t.match(
    execFileSync('lsattr', ['-d', join(be.root, 'a1', P0A)])
      .toString()
      .split(' ')[0],
    /a/,
  )
  t.match(
    execFileSync('lsattr', ['-d', join(be.root, 'a1')])
      .toString()
      .split(' ')[0],
    /a/,
  )
  t.match(be.status(), { unsealed_rows: 0, protection: { honoured: true, sealing: true } })
  const enf = await BlobStore.init({ dataDir: tempData(t), protection: 'enforce' })
  t.teardown(() => enf.close())
  await enf.put(P0B, Buffer.from('y'))
  const v = await enf.verify()
  t.ok(v.ok && v.sealChecked)
  // unseal one file behind the store's back: verify reports it
  const k = await enf.put(P0B, Buffer.from('z'))
  execFileSync('chattr', ['-i', join(enf.root, k.path)])
  t.same((await enf.verify()).unsealed, [k.path])
})

t.test('open cleans the staging area', async (t) => {
  const data = tempData(t)
  const s = await BlobStore.init({ dataDir: data, ...quiet })
  await s.close()
  writeFileSync(join(data, 'staging', 'x.cla.tmp'), 'partial')
  writeFileSync(join(data, 'staging', 'stuck'), 'sealed leftover')
  try {
    execFileSync('chattr', ['+i', join(data, 'staging', 'stuck')], { stdio: 'ignore' })
  } catch {
    // not root: an ordinary leftover then
  }
  const s2 = await BlobStore.open({ dataDir: data, ...quiet })
  t.same(readdirSync(join(data, 'staging')), [])
  await s2.close()
})

t.test('close() waits for every queued put (regression: groups queued by groups)', async (t) => {
  const data = tempData(t)
  const s = await BlobStore.init({ dataDir: data, protection: 'off', maxBatch: 16 })
  const puts = Array.from({ length: 200 }, (_, i) => s.put(P0A, Buffer.from(`p${i}`)))
  await s.close()
  const infos = await Promise.all(puts)
  t.equal(infos.length, 200)
  const s2 = await BlobStore.open({ dataDir: data, protection: 'off' })
  t.equal(s2.status().blobs, 200)
  t.ok((await s2.verify()).ok)
  await s2.close()
})

t.test('ingest copies across filesystems (EXDEV) through its own staging', async (t) => {
  if (!existsSync('/dev/shm')) {
    t.skip('no /dev/shm here', () => {})
    return
  }
  const core = await BlobStore.init({ dataDir: tempData(t), protection: 'off' })
  t.teardown(() => core.close())
  const pop = await BlobStore.init({
    dataDir: tempData(t),
    role: 'pop',
    protection: 'off',
    trustKeys: [core.publicKey!],
  })
  t.teardown(() => pop.close())
  const info = await core.put(P0B, Buffer.from('over the border'))
  const shm = mkdtempSync('/dev/shm/clavitor-ingest-')
  t.teardown(() => rmSync(shm, { recursive: true, force: true }))
  const staged = join(shm, 'x.cla')
  copyFileSync(join(core.root, info.path), staged)
  t.same(await pop.ingest([{ file: staged, expect: info }]), [info])
  t.notOk(existsSync(staged), 'consumed')
  t.equal((await pop.readPayload(info)).toString(), 'over the border')
  t.same(readdirSync(join(pop.dataDir, 'staging')), [])
})

t.test(
  'ingest renames whole staged p0 folders, links the rest, and shows nothing unverified',
  async (t) => {
    const core = await BlobStore.init({ dataDir: tempData(t), protection: 'off' })
    t.teardown(() => core.close())
    for (const ingestSyncfsMin of [0, Infinity]) {
      const popData = tempData(t)
      const pop = await BlobStore.init({
        dataDir: popData,
        role: 'pop',
        trustKeys: [core.publicKey!],
        ingestSyncfsMin,
        ingestSyncfsMaxDirty: 0,
        ...quiet,
      })
      t.teardown(() => pop.close())
      const a1 = await core.put(P0A, Buffer.from('a1'))
      const a2 = await core.put(P0A, Buffer.from('a2'))
      const b1 = await core.put(P0B, Buffer.from('b1'))
      const c1 = await core.put(P0C, Buffer.from('c1'))
      const c2 = await core.put(P0C, Buffer.from('c2'))
      let run = 0
      // staged like lib/pop-sync/repair.ts: {run}/{shard}/{p0}/{name} (the pull stages flat)
      const stage = (infos: BlobInfo[], tamper?: BlobInfo) => {
        const dir = join(popData, '..', `run-${run++}`)
        return infos.map((i) => {
          const file = join(dir, i.path)
          mkdirSync(join(file, '..'), { recursive: true })
          copyFileSync(join(core.root, i.path), file)
          if (i === tamper) {
            const b = readFileSync(file)
            b[b.length - 1]! ^= 1
            writeFileSync(file, b)
          }
          return { file, expect: i }
        })
      }
      const mode = `syncfs from ${ingestSyncfsMin}`
      // a batch with one tampered file: refused whole, nothing visible, staged files stay
      const bad = stage([a1, a2, b1], b1)
      await t.rejects(pop.ingest(bad), { code: 'CLA_ERR_BAD_SIGNATURE' }, mode)
      for (const i of [a1, a2, b1])
        t.notOk(existsSync(join(pop.root, i.path)), `${mode}: nothing of a refused batch visible`)
      t.notOk(existsSync(join(pop.root, a1.path, '..')), `${mode}: not even its p0 folder`)
      t.ok(existsSync(bad[0]!.file), `${mode}: staged files of a refused batch are left alone`)
      // p0 A: both versions staged → the folder is renamed whole; p0 C: the staged folder
      // also holds a file outside the batch → linked one by one, the extra file stays behind
      const batch = stage([a1, a2, b1, c1])
      const extra = join(batch[3]!.file, '..', `${c2.path.split('/')[2]}`)
      copyFileSync(join(core.root, c2.path), extra)
      t.same(await pop.ingest(batch), [a1, a2, b1, c1], mode)
      t.notOk(existsSync(join(batch[0]!.file, '..')), `${mode}: p0 A's staged folder was moved`)
      t.ok(existsSync(extra), `${mode}: a file outside the batch is not taken along`)
      t.notOk(existsSync(join(pop.root, c2.path)), `${mode}: and not visible`)
      t.notOk(existsSync(batch[3]!.file), `${mode}: p0 C's batch file was linked and consumed`)
      // p0 C's folder exists now: the next version is linked into it
      t.same(await pop.ingest(stage([c2])), [c2], mode)
      t.same(
        pop.versions(P0C).map((i) => i.seq),
        [c1.seq, c2.seq],
      )
      // a flat folder of the caller's holding one new p0's file is not taken, only its file
      const d1 = await core.put(P0D, Buffer.from('d1'))
      const flat = join(popData, '..', `flat-${run++}`)
      mkdirSync(flat)
      copyFileSync(join(core.root, d1.path), join(flat, d1.path.split('/')[2]!))
      t.same(await pop.ingest([{ file: join(flat, d1.path.split('/')[2]!), expect: d1 }]), [d1])
      t.same(readdirSync(flat), [], `${mode}: the caller's folder stays, emptied`)
      const v = await pop.verify()
      t.ok(v.ok, `${mode}: verify clean (sealed folders and files when sealing is in force)`)
      if (!v.ok) t.comment(JSON.stringify(v))
      t.equal((await pop.readPayload(a2)).toString(), 'a2')
      await pop.close()
    }
  },
)

t.test('syncfs through the sealer shell and standalone; failures are typed', async (t) => {
  const dir = tempData(t)
  mkdirSync(dir, { recursive: true })
  const sealer = new Sealer()
  t.teardown(() => sealer.close())
  await sealer.syncfs([dir])
  await syncfs([dir])
  const missing = join(dir, 'no-such-folder')
  await t.rejects(sealer.syncfs([missing]), {
    code: 'CLA_ERR_STORE_SYNC_FAILED',
    message: /no-such-folder|No such file/,
  })
  await sealer.syncfs([dir]) // the shell survives a failed request
  await t.rejects(syncfs([missing]), { code: 'CLA_ERR_STORE_SYNC_FAILED' })
})

t.test('ingest refuses a staged symlink, even to a valid file', async (t) => {
  const core = await BlobStore.init({ dataDir: tempData(t), protection: 'off' })
  t.teardown(() => core.close())
  const popData = tempData(t)
  const pop = await BlobStore.init({
    dataDir: popData,
    role: 'pop',
    protection: 'off',
    trustKeys: [core.publicKey!],
  })
  t.teardown(() => pop.close())
  const info = await core.put(P0A, Buffer.from('real'))
  const file = join(popData, '..', 'run', info.path)
  mkdirSync(join(file, '..'), { recursive: true })
  symlinkSync(join(core.root, info.path), file)
  await t.rejects(pop.ingest([{ file, expect: info }]), { code: 'CLA_ERR_NOT_FOUND' })
  t.notOk(existsSync(join(pop.root, info.path, '..')), 'nothing visible')
  t.equal(pop.status().blobs, 0)
})

const rows = (s: BlobStore) =>
  (s.db.prepare('SELECT COUNT(*) AS n FROM blobs').get() as { n: number }).n

t.test('verifyStaged: verified ahead, ingested once, refused if the file changed', async (t) => {
  const core = await BlobStore.init({ dataDir: tempData(t), protection: 'off' })
  t.teardown(() => core.close())
  const popData = tempData(t)
  const trust = { role: 'pop' as const, trustKeys: [core.exportPublicKey().publicKey] }
  const pop = await BlobStore.init({ dataDir: popData, ...trust })
  t.teardown(() => pop.close())
  const other = await BlobStore.init({ dataDir: tempData(t), ...trust })
  t.teardown(() => other.close())
  const infos = [
    await core.put(P0A, Buffer.from('a1')),
    await core.put(P0B, Buffer.from('b1')),
    await core.put(P0C, Buffer.from('c1')),
    await core.put(P0D, Buffer.from('d1')),
  ]
  const inbox = join(popData, '..', 'inbox-v')
  mkdirSync(inbox, { recursive: true })
  const stage = (i: BlobInfo) => {
    const f = join(inbox, i.path.split('/')[2]!)
    copyFileSync(join(core.root, i.path), f)
    return { file: f, expect: i }
  }
  const staged = infos.map(stage)
  // damage the third: the verified prefix is the first two, the third is named
  const bad = readFileSync(staged[2]!.file)
  bad[bad.length - 1] = bad[bad.length - 1]! ^ 1
  writeFileSync(staged[2]!.file, bad)
  const r = await pop.verifyStaged(staged)
  t.same(r.verified.paths, [infos[0]!.path, infos[1]!.path], 'the good prefix, in order')
  t.equal(r.bad?.index, 2)
  t.equal(r.bad?.file, staged[2]!.file)
  t.match(r.bad?.error, { code: 'CLA_ERR_BAD_SIGNATURE' })
  t.equal(rows(pop), 0, 'verifying shows nothing')

  await t.rejects(other.ingest(r.verified), { code: 'CLA_ERR_INVALID_INPUT' }, 'another store')
  t.same(await pop.ingest(r.verified), infos.slice(0, 2))
  await t.rejects(pop.ingest(r.verified), { code: 'CLA_ERR_INVALID_INPUT' }, 'only once')
  t.equal(rows(pop), 2)

  // a staged file swapped after verification (same size, new inode) is refused whole
  writeFileSync(staged[2]!.file, readFileSync(join(core.root, infos[2]!.path)))
  const again = await pop.verifyStaged([staged[2]!, staged[3]!])
  t.equal(again.bad, null)
  const swapped = join(inbox, 'swap')
  copyFileSync(staged[3]!.file, swapped)
  renameSync(swapped, staged[3]!.file)
  await t.rejects(pop.ingest(again.verified), { code: 'CLA_ERR_HEADER_MISMATCH' })
  t.equal(rows(pop), 2, 'nothing of the refused batch is indexed')
  t.notOk(existsSync(join(pop.root, infos[2]!.path)), 'nor visible')
  const last = await pop.verifyStaged([staged[2]!, staged[3]!])
  t.same(await pop.ingest(last.verified), infos.slice(2))
  t.ok((await pop.verify()).ok)
})

t.test('dirty page cache figures from /proc/meminfo', async (t) => {
  const meminfo =
    'MemTotal:       24684144 kB\nDirty:              1024 kB\nWriteback:           512 kB\n'
  t.equal(parseDirtyBytes(meminfo), 1536 * 1024)
  t.equal(parseDirtyBytes('Dirty:   7 kB\n'), 7 * 1024)
  t.equal(parseDirtyBytes('MemTotal: 1 kB\n'), null, 'neither line: unknown')
  const here = dirtyBytes()
  if (process.platform === 'linux') t.ok(here !== null && here >= 0, 'read on Linux')
})

t.test('a small batch uses syncfs only while the page cache is nearly clean', async (t) => {
  const core = await BlobStore.init({ dataDir: tempData(t), protection: 'off' })
  t.teardown(() => core.close())
  const infos = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      core.put(`${(i + 16).toString(16)}`.repeat(16), Buffer.from(`x${i}`)),
    ),
  )
  for (const [maxDirty, expectSyncfs] of [
    [Number.MAX_SAFE_INTEGER, true],
    [0, false],
  ] as const) {
    const popData = tempData(t)
    const pop = await BlobStore.init({
      dataDir: popData,
      role: 'pop',
      trustKeys: [core.publicKey!],
      ingestSyncfsMaxDirty: maxDirty,
      ...quiet,
    })
    t.teardown(() => pop.close())
    const inbox = join(popData, '..', `inbox-d${maxDirty}`)
    mkdirSync(inbox, { recursive: true })
    const staged = infos.map((i) => {
      const f = join(inbox, i.path.split('/')[2]!)
      copyFileSync(join(core.root, i.path), f)
      return { file: f, expect: i }
    })
    // count the store's `sync -f` runs through its sealer shell
    const sealer = (
      pop as unknown as { ctx: { sealer: { syncfs: (p: string[]) => Promise<void> } } }
    ).ctx.sealer
    let syncfsRuns = 0
    const orig = sealer.syncfs.bind(sealer)
    sealer.syncfs = (p: string[]) => {
      syncfsRuns++
      return orig(p)
    }
    t.same(await pop.ingest(staged), infos)
    t.equal(syncfsRuns > 0, expectSyncfs, `max dirty ${maxDirty}: syncfs ${expectSyncfs}`)
    t.ok((await pop.verify()).ok)
  }
})
