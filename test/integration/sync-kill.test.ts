// A POP killed mid-pull (SIGKILL of a `clavitor pop sync --once` child and its rsync)
// resumes on the next run: nothing lost, nothing fetched twice once sealed, store verifies.
import t from 'tap'
import { spawn } from 'node:child_process'
import { coreAndEmptyPop, indexOf, openTestPop } from '../fixtures/sync.js'

const CLI = new URL('../../scripts/clavitor', import.meta.url).pathname

t.test('SIGKILL mid-pull, then resume', async (t) => {
  const { core, popDir } = await coreAndEmptyPop(t, 3000, 'pop-k')

  const child = spawn(
    CLI,
    [
      'pop',
      'sync',
      '--once',
      '--data',
      popDir,
      '--id',
      'pop-k',
      '--core',
      core.url,
      '--rsync-source',
      core.root,
      '--page-size',
      '100',
    ],
    { detached: true, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  let err = ''
  child.stderr.on('data', (d: Buffer) => (err += d.toString()))
  const killedAt = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const m = /sealed (\d+)/.exec(out.split('\n').filter(Boolean).pop() ?? '')
      if (m && Number(m[1]) >= 300) {
        process.kill(-child.pid!, 'SIGKILL') // the whole group: node and its rsync child
        resolve(Number(m[1]))
      }
    })
    child.on('exit', (code) =>
      reject(new Error(`child exited (${code}) before the kill:\n${out}\n${err}`)),
    )
  }).finally(() => child.removeAllListeners('exit'))
  await new Promise((r) => child.once('close', r))
  t.ok(
    killedAt >= 300 && killedAt < 3000,
    `killed after ${killedAt} sealed (plain progress lines on a pipe)`,
  )

  const pop = await openTestPop(t, core, popDir, 'pop-k', { pageSize: 100 })
  const before = indexOf(pop.store).length
  t.ok(before >= 300 && before < 3000, `${before} indexed before resume`)
  const r = await pop.sync.run()
  t.equal(r.sealed + r.already, 3000 - before, 'the rest, once')
  t.ok(r.sealed < 3000, 'resumed, not restarted')
  t.same(indexOf(pop.store), indexOf(core.store), 'converged')
  const v = await pop.store.verify()
  t.ok(v.ok, 'store verifies (no half-written or unindexed file)')
  t.equal(v.unindexed.length, 0)
})
