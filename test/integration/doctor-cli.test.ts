// `clavitor doctor` as a process: a failed check exits 1, --json says so (the checks
// themselves: test/lib/doctor.test.ts).
import t from 'tap'
import { spawnSync } from 'node:child_process'

const CLI = new URL('../../scripts/clavitor', import.meta.url).pathname

t.test('doctor: a failed check exits 1', async (t) => {
  const dir = t.testdir()
  const cli = spawnSync(CLI, ['doctor', '--data', dir, '--json', '--core', 'http://127.0.0.1:9'], {
    encoding: 'utf8',
  })
  t.equal(cli.status, 1, 'a failed check exits 1')
  t.equal(JSON.parse(cli.stdout).ok, false)
})
