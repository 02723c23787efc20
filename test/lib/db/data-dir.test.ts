// Regression (issue 11, item 10): meta.db, its WAL and the data folder were created
// world-readable. Now {data} is 0700 and meta.db/-wal/-shm 0600 whatever the umask,
// while the store stays readable by the rsync daemon's `nobody` (folders 0755, blobs
// 0444) even under the units' UMask=0077.
import { spawnSync } from 'node:child_process'
import { chmodSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { openCore } from '../../../lib/core.js'
import { openDb } from '../../../lib/db/open.js'
import { checkModes } from '../../../lib/doctor.js'
import { randomP0 } from '../../fixtures/sync.js'

const root = mkdtempSync(join(tmpdir(), 'clavitor-modes-'))
t.teardown(() => {
  spawnSync('chattr', ['-R', '-i', '-a', root])
  rmSync(root, { recursive: true, force: true })
})
const mode = (p: string) => (statSync(p).mode & 0o777).toString(8)

for (const umask of [0o022, 0o077]) {
  t.test(`umask ${umask.toString(8).padStart(4, '0')}`, async (t) => {
    const old = process.umask(umask)
    t.teardown(() => void process.umask(old))
    const data = join(root, `data-${umask.toString(8)}`)
    const core = await openCore({ dataDir: data, protection: 'off' })
    const p0 = randomP0()
    await core.store.put(p0, Buffer.from('a blob'))
    t.equal(mode(data), '700', '{data} is 0700')
    t.equal(mode(join(data, 'meta.db')), '600', 'meta.db is 0600')
    t.equal(mode(join(data, 'meta.db-wal')), '600', 'its WAL is 0600')
    t.equal(mode(join(data, 'meta.db-shm')), '600', 'its shared memory is 0600')
    const store = join(data, 'store')
    const shard = join(store, p0.slice(0, 2))
    const dir = join(shard, p0)
    t.equal(mode(store), '755', 'the store root is readable by the rsync daemon')
    t.equal(mode(shard), '755', 'so are its shards')
    t.equal(mode(dir), '755', 'and its p0 folders')
    const [blob] = readdirSync(dir)
    t.equal(mode(join(dir, blob!)), '444', 'and its blobs')
    t.same(checkModes(data).verdict, 'ok', 'doctor: private')
    await core.close()
  })
}

t.test('an existing meta.db made world-readable is made 0600 when opened', async (t) => {
  const dir = mkdtempSync(join(root, 'old-'))
  const file = join(dir, 'meta.db')
  writeFileSync(file, '')
  chmodSync(file, 0o644)
  chmodSync(dir, 0o755)
  t.equal(checkModes(dir).verdict, 'warn', 'doctor warns before')
  t.match(checkModes(dir).detail, /chmod 700/)
  openDb(file).close()
  t.equal(mode(file), '600')
  t.match(checkModes(dir).detail, /^(?!.*meta\.db).*$/, 'only the folder is left to the operator')
})
