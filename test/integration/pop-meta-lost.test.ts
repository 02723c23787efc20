// A POP that lost its meta.db (or its WAL with a kill) indexes what it holds when it opens
// (issue 13 item 4): the next pull fetches nothing it already has, and the loss of its audit
// history is an alarm (sync.alarm meta_lost), not silence.
import t from 'tap'
import { rmSync } from 'node:fs'
import { join } from 'node:path'
import { listEvents } from '../../lib/audit/log.js'
import { indexOf, openTestPop, startCore, tempDir } from '../fixtures/sync.js'

t.test('a POP that lost meta.db re-indexes its files instead of fetching them again', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  await core.addBlobs(120)
  const popDir = join(dir, 'pop')
  const first = await openTestPop(t, core, popDir, 'pop-m')
  t.equal((await first.sync.run()).sealed, 120)
  await first.close()
  for (const f of ['meta.db', 'meta.db-wal', 'meta.db-shm'])
    rmSync(join(popDir, f), { force: true })

  await core.addBlobs(5)
  const pop = await openTestPop(t, core, popDir, 'pop-m')
  t.same(
    [pop.store.healed?.adopted, pop.store.healed?.recovered],
    [true, 120],
    'the index was rebuilt from the 120 files at open',
  )
  const alarms = listEvents(pop.db, {}).filter((e) => e.kind === 'sync.alarm')
  t.same(
    alarms.map((e) => [e.reason, (JSON.parse(e.data ?? '{}') as { recovered: number }).recovered]),
    [['meta_lost', 120]],
    'the lost history is an alarm, the first row of the new chain',
  )
  const r = await pop.sync.run()
  t.same([r.already, r.sealed], [120, 5], 'only the 5 new blobs are fetched')
  t.same(indexOf(pop.store), indexOf(core.store), 'and the POP equals the core again')
})
