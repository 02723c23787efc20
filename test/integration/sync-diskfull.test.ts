// A POP whose disk fills up mid-pull (a small tmpfs holds its data folder): the run fails
// with CLA_ERR_SYNC_DISK_FULL (or rsync's own I/O error), the cursor stays on sealed
// blobs; after space is freed (the tmpfs grows), the next run completes.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { isClavitorError } from '../../lib/errors.js'
import { decodeCursor } from '../../lib/store/cursor.js'
import { getMeta, K_CURSOR } from '../../lib/pop-sync/state.js'
import { indexOf, openTestPop, startCore, tempDir } from '../fixtures/sync.js'
import { canMount } from '../fixtures/mount.js'

t.test('disk full mid-pull, then space freed', { skip: canMount() }, async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  await core.addBlobs(600)
  const mnt = join(dir, 'small')
  mkdirSync(mnt)
  t.equal(
    spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1800k', 'tmpfs', mnt]).status,
    0,
    'small tmpfs',
  )
  t.teardown(() => {
    spawnSync('umount', ['-l', mnt])
  })
  const pop = await openTestPop(t, core, join(mnt, 'pop'), 'pop-full', {
    pageSize: 100,
    protection: 'best-effort',
  })
  let code = ''
  try {
    await pop.sync.run()
    t.fail('expected the disk to fill')
  } catch (err) {
    code = isClavitorError(err) ? err.code : String(err)
  }
  t.match(code, /^CLA_ERR_SYNC_(DISK_FULL|RSYNC|PARTIAL)$/, `typed failure: ${code}`)
  const held = indexOf(pop.store).length
  t.ok(held < 600, `${held} sealed before the disk filled`)
  const cur = decodeCursor(getMeta(pop.db, K_CURSOR))
  t.ok(cur === null || pop.store.bySeq(cur.seq), 'cursor on a sealed blob')
  t.not(
    pop.sync.status().last_run?.ok,
    true,
    'the run is not recorded as ok (recording may itself fail on a full disk)',
  )

  t.equal(spawnSync('mount', ['-o', 'remount,size=64m', mnt]).status, 0, 'space freed')
  const r = await pop.sync.run()
  t.equal(r.sealed + r.already, 600 - held)
  t.same(indexOf(pop.store), indexOf(core.store))
  t.ok((await pop.store.verify()).ok)
  await pop.close()
  t.equal(spawnSync('umount', [mnt]).status, 0, 'unmounted')
})
