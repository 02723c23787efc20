import t from 'tap'
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  renameSync,
  rmdirSync,
  truncateSync,
  unlinkSync,
  writeFileSync,
  openSync,
  linkSync,
} from 'node:fs'
import { join } from 'node:path'
import {
  BlobStore,
  chunkArgs,
  probeSealing,
  readAttrs,
  Sealer,
  shQuote,
} from '../../../lib/store/index.js'
import { tempData, P0A } from '../../fixtures/store/helpers.js'

t.test('chunkArgs cuts long argument lists like xargs', async (t) => {
  t.same(chunkArgs([]), [])
  t.same(chunkArgs(['a', 'b', 'c'], 4), [['a', 'b'], ['c']])
  const many = Array.from({ length: 10_000 }, (_, i) => `/some/long/path/${i}/file.cla`)
  const chunks = chunkArgs(many)
  t.ok(chunks.length > 1)
  t.same(chunks.flat(), many)
})

t.test(
  'a sealed file cannot be written, truncated, renamed or deleted; a new version can be added',
  async (t) => {
    const data = tempData(t)
    mkdirSync(data, { recursive: true })
    const probe = await probeSealing(data)
    if (!probe.honoured) {
      t.skip(`this filesystem/user cannot seal (needs root on ext4): ${probe.reason}`, () => {})
      return
    }
    const s = await BlobStore.init({ dataDir: data, protection: 'enforce' })
    t.teardown(() => s.close())
    const v1 = await s.put(P0A, Buffer.from('version 1'))
    const file = join(s.root, v1.path)
    const p0dir = join(s.root, 'a1', P0A)
    const eperm = { code: 'EPERM' }
    t.throws(() => openSync(file, 'r+'), eperm, 'open for write')
    t.throws(() => appendFileSync(file, 'x'), eperm, 'append')
    t.throws(() => writeFileSync(file, 'x'), eperm, 'overwrite')
    t.throws(() => truncateSync(file, 0), eperm, 'truncate')
    t.throws(() => renameSync(file, file + '.moved'), eperm, 'rename')
    t.throws(() => unlinkSync(file), eperm, 'unlink')
    t.throws(() => linkSync(file, join(data, 'staging', 'hardlink')), eperm, 'hard link')
    // the p0 folder is append-only: its entries cannot be removed or renamed, nor can it
    t.throws(() => renameSync(p0dir, p0dir + 'x'), eperm, 'rename p0 folder')
    t.throws(() => rmdirSync(join(s.root, '00')), eperm, 'remove an (empty) shard folder')
    // a new version for the same p0 still goes in, and both stay readable
    const v2 = await s.put(P0A, Buffer.from('version 2'))
    t.not(v2.path, v1.path)
    t.ok(existsSync(join(s.root, v2.path)))
    t.same(s.versions(P0A), [v1, v2])
    t.equal((await s.readPayload(v1)).toString(), 'version 1')
    t.equal((await s.readPayload(v2)).toString(), 'version 2')
    t.throws(() => unlinkSync(join(s.root, v2.path)), eperm, 'the new version is sealed too')
    const r = await s.verify()
    t.ok(r.ok && r.sealChecked, 'verify: all sealed')
  },
)

t.test('the sealer shell: odd names, typed failures, restart after it dies', async (t) => {
  t.equal(shQuote("it's"), `'it'\\''s'`)
  const dir = tempData(t)
  mkdirSync(dir, { recursive: true })
  const probe = await probeSealing(dir)
  if (!probe.honoured) {
    t.skip(`needs root on ext4: ${probe.reason}`, () => {})
    return
  }
  const sealer = new Sealer()
  t.teardown(() => sealer.close())
  const odd = [join(dir, "a b'c $(x) \\n.cla"), join(dir, 'plain.cla'), join(dir, '-dash.cla')]
  for (const f of odd) writeFileSync(f, 'x')
  await sealer.chattr(['+i'], odd)
  const attrs = await readAttrs(odd)
  for (const f of odd) t.match(attrs.get(f), /i/, f)
  await t.rejects(sealer.chattr(['+i'], [join(dir, 'missing.cla')]), {
    code: 'CLA_ERR_SEAL_FAILED',
    message: /missing\.cla|No such file/,
  })
  // the shell dies: the next request starts a new one
  ;(sealer as unknown as { proc: { kill: (s: string) => void } }).proc.kill('SIGKILL')
  await new Promise((r) => setTimeout(r, 200))
  await sealer.chattr(['-i'], odd)
  for (const f of odd) unlinkSync(f)
  t.pass('unsealed and removed after a restart')
})

// A chattr that refuses, put first on PATH after the store's probe succeeded: the sealer
// shell (started at the first seal) runs it. Only the system tool is replaced.
async function withRefusingChattr(t: { teardown: (fn: () => void) => void }, dir: string) {
  const bin = join(dir, '..', 'fake-bin')
  mkdirSync(bin, { recursive: true })
  writeFileSync(
    join(bin, 'chattr'),
    '#!/bin/sh\necho "chattr: Operation not permitted while setting flags on $3" >&2\nexit 1\n',
    { mode: 0o755 },
  )
  const saved = process.env.PATH
  process.env.PATH = `${bin}:${saved}`
  t.teardown(() => {
    process.env.PATH = saved
  })
}

t.test(
  'a seal that fails: enforce rejects the put, best-effort warns; both index with sealed = 0',
  async (t) => {
    const probeDir = tempData(t)
    mkdirSync(probeDir, { recursive: true })
    if (!(await probeSealing(probeDir)).honoured) {
      t.skip('needs root on ext4', () => {})
      return
    }
    const enfData = tempData(t)
    const enf = await BlobStore.init({ dataDir: enfData, protection: 'enforce' })
    t.teardown(() => enf.close())
    const warnings: string[] = []
    const beData = tempData(t)
    const be = await BlobStore.init({ dataDir: beData, onWarning: (m) => warnings.push(m) })
    t.teardown(() => be.close())
    await withRefusingChattr(t, enfData)

    await t.rejects(enf.put(P0A, Buffer.from('x')), {
      code: 'CLA_ERR_SEAL_FAILED',
      message: /not permitted/,
    })
    t.equal(enf.status().blobs, 1, 'the durable file is indexed all the same: nothing is lost')
    t.equal(enf.status().unsealed_rows, 1)
    t.match(enf.status().protection, { mode: 'enforce', honoured: false, reason: /chattr/ })

    const info = await be.put(P0A, Buffer.from('y'))
    await be.put(P0A, Buffer.from('z'))
    t.equal(warnings.length, 1, 'best-effort warns once')
    t.match(warnings[0], /sealing failed/)
    t.equal(be.status().unsealed_rows, 2)
    t.equal((await be.readPayload(info)).toString(), 'y')
    const r = await be.verify()
    t.ok(r.unsealed.includes(info.path), 'verify reports the unsealed file')
  },
)
