// `clavitor core backup` as a process: writes the copy and says where; never overwrites
// (the online backup itself: test/lib/db/backup.test.ts).
import t from 'tap'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { openDb } from '../../lib/db/open.js'

const CLI = new URL('../../scripts/clavitor', import.meta.url).pathname

t.test('clavitor core backup (CLI)', async (t) => {
  const dir = t.testdir()
  openDb(join(dir, 'meta.db')).close()
  const ok = spawnSync(CLI, ['core', 'backup', '--data', dir, '--out', join(dir, 'b.db')], {
    encoding: 'utf8',
  })
  t.equal(ok.status, 0, ok.stderr)
  t.equal(JSON.parse(ok.stdout).out, join(dir, 'b.db'))
  const again = spawnSync(CLI, ['core', 'backup', '--data', dir, '--out', join(dir, 'b.db')], {
    encoding: 'utf8',
  })
  t.equal(again.status, 1)
  t.match(again.stderr, /CLA_ERR_EXISTS/)
})
