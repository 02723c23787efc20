// lib/pop-sync/repair.ts: a POP's own damaged blobs are found (quick check: missing or
// other size; full verify: same-size damage), queued, moved aside and fetched again from
// the core; an intact queued file is dropped from the queue, never fetched.
import { spawnSync } from 'node:child_process'
import { appendFileSync, chmodSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { checkTree } from '../../../lib/pop-sync/tree-check.js'
import {
  fullVerify,
  pendingRepairs,
  queueRepair,
  quickCheck,
  repairQueued,
} from '../../../lib/pop-sync/repair.js'
import { openTestPop, startCore, tempDir } from '../../fixtures/sync.js'

const unseal = (p: string) => spawnSync('chattr', ['-i', '-a', p])

t.test('find, queue, quarantine and fetch again', async (t) => {
  const root = tempDir(t)
  const core = await startCore(t, join(root, 'core'))
  const blobs = await core.addBlobs(4)
  const pop = await openTestPop(t, core, join(root, 'pop'), 'pop-r', { protection: 'off' })
  await pop.sync.run()
  const store = pop.store
  const file = (i: number) => join(store.root, blobs[i]!.path)
  const first = await quickCheck(store) // the first check reads every file once
  t.same([first.bad, first.read], [[], blobs.length], 'a first check reads every file')
  for (const i of [0, 1, 2]) {
    unseal(file(i))
    unseal(join(file(i), '..'))
    chmodSync(file(i), 0o644)
  }
  unlinkSync(file(0)) // missing
  appendFileSync(file(1), 'x') // other size
  const same = readFileSync(file(2)) // same size, one byte flipped
  same[same.length - 70] = same[same.length - 70]! ^ 0xff
  writeFileSync(file(2), same)

  const quick = await quickCheck(store)
  t.same(
    quick.bad.map((q) => [q.path, q.reason]).sort(),
    [
      [blobs[0]!.path, 'missing'],
      [blobs[1]!.path, 'size'],
      [blobs[2]!.path, 'damaged'],
    ].sort(),
    'the quick check sees missing and resized files, and same-size damage (its ctime moved)',
  )
  // what the check reads is what changed since: nothing changed after a time to come
  const none = await checkTree(store, { sinceMs: Date.now() + 60_000 })
  t.same(
    [none.read, none.bad.map((b) => b.reason).sort()],
    [0, ['missing', 'size']],
    'files older than the last check are stat’ed, not read',
  )
  const full = await fullVerify(store)
  t.ok(
    full.some((f) => f.path === blobs[2]!.path),
    'a full verify sees the same-size damage',
  )
  queueRepair(store.db, [{ path: blobs[3]!.path, reason: 'suspect' }]) // intact
  t.equal(Object.keys(pendingRepairs(store.db)).length, 4)

  const audits: string[] = []
  const res = await repairQueued({
    popId: 'pop-r',
    store,
    rsync: { source: core.root },
    stagingDir: join(root, 'pop', 'repair-staging'),
    audit: (ev) => audits.push(`${ev.kind}:${ev.reason ?? ''}`),
  })
  t.same(res.repaired.sort(), [0, 1, 2].map((i) => blobs[i]!.path).sort(), 'repaired')
  t.same(res.intact, [blobs[3]!.path], 'the intact one is only dropped from the queue')
  t.same(res.failed, [])
  t.same(pendingRepairs(store.db), {}, 'the queue is empty')
  for (const i of [0, 1, 2, 3])
    t.same(
      readFileSync(file(i)),
      readFileSync(join(core.root, blobs[i]!.path)),
      `blob ${i} as the core has it`,
    )
  t.ok(
    audits.some((a) => a.startsWith('sync.repair:quarantined')),
    'damaged files moved aside, audited',
  )
  rmSync(join(root, 'pop', 'repair-staging'), { recursive: true, force: true })
})
