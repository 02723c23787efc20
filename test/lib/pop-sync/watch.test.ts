// The watch of a POP's sealed tree (live watches on the root and shard folders, sweeps of
// the whole tree): changes the agent did not make are alarms (audited, queued for repair);
// the agent's own ingest is not; the next run repairs. Also: a lookup that meets a damaged
// file answers 503 and queues the repair. The lists of recent alarms and judged paths are
// bounded (keepRecent).
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { listEvents } from '../../../lib/audit/log.js'
import { pendingRepairs } from '../../../lib/pop-sync/repair.js'
import { TreeWatch } from '../../../lib/pop-sync/watch.js'
import { buildPopApp } from '../../../pop-agent/app.js'
import { openTestPop, randomP0, startCore, tempDir } from '../../fixtures/sync.js'

const until = async (cond: () => boolean, ms = 10_000) => {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 50))
  }
}

function openUp(file: string): void {
  execFileSync('chattr', ['-i', file], { stdio: 'ignore' })
  execFileSync('chattr', ['-a', join(file, '..')], { stdio: 'ignore' })
}

t.test(
  'foreign changes are alarms; the agent’s own writes are not; the next run repairs',
  async (t) => {
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    const infos = await core.addBlobs(6)
    const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-w', { watch: true })
    const w = pop.watcher!
    t.equal(w.watchCount, 257, 'one watch on the root and one per shard folder, at any size')
    await pop.sync.run()
    const later = await core.addBlobs(3)
    await pop.sync.run()
    // wait for the watcher's verdict on every p0 folder the agent made, then look
    const dirs = [...new Set([...infos, ...later].map((i) => i.path.replace(/\/[^/]+$/, '')))]
    await until(() => dirs.every((d) => w.judged.includes(d)))
    t.same(w.alarms, [], 'the agent’s own ingests raise nothing')
    // and until the agent's announcements are over: from here every change is foreign
    await until(() => w.expecting() === 0)
    const quiet = await w.sweep()
    t.same([quiet.bad, quiet.foreign, w.alarms], [[], [], []], 'a sweep of the intact tree')

    const removed = join(pop.store.root, infos[1]!.path)
    openUp(removed)
    rmSync(removed)
    const edited = join(pop.store.root, infos[2]!.path)
    openUp(edited)
    const b = readFileSync(edited)
    b[b.length - 80] = b[b.length - 80]! ^ 0x55
    writeFileSync(edited, b)
    const foreign = join(
      pop.store.root,
      infos[3]!.path.replace(/_[0-9a-f]{16}\.cla$/, '_ffffffffffffffff.cla'),
    )
    openUp(join(pop.store.root, infos[3]!.path))
    writeFileSync(foreign, 'not a blob')
    const foreignRel = foreign.slice(pop.store.root.length + 1)
    // a folder nobody indexed, live at the shard level
    const strayDir = join(pop.store.root, infos[0]!.path.slice(0, 2), 'not-a-p0')
    execFileSync('chattr', ['-a', join(strayDir, '..')], { stdio: 'ignore' })
    mkdirSync(strayDir)
    const strayRel = strayDir.slice(pop.store.root.length + 1)
    await until(() => w.alarms.some((a) => a.reason === 'foreign_dir'))
    t.same(
      w.alarms.map((a) => [a.event, a.reason, a.path]),
      [['addDir', 'foreign_dir', strayDir.slice(pop.store.root.length + 1)]],
      'the live watch judges the shard level only',
    )
    // inside p0 folders: the next sweep (ctime tells it which files to read)
    const swept = await w.sweep()
    t.ok(swept.read < infos.length + later.length, 'only changed files were read')
    t.equal(w.alarms.length, 4)
    const reasons = w.alarms.map((a) => `${a.reason}:${a.path}`)
    t.ok(reasons.includes(`removed:${infos[1]!.path}`), 'removal')
    t.ok(reasons.includes(`damaged:${infos[2]!.path}`), 'edit')
    t.ok(
      reasons.some((r) => r.startsWith('foreign_file:')),
      'foreign file',
    )
    const q = pendingRepairs(pop.db)
    t.ok(q[infos[1]!.path] && q[infos[2]!.path], 'both queued for repair')
    t.ok(
      listEvents(pop.db, {}).filter((e) => e.kind === 'sync.alarm' && e.reason?.startsWith('tree_'))
        .length >= 3,
      'audited',
    )

    // a sweep that reads everything finds them again, but each alarms once
    const all = await w.sweep({ full: true })
    t.same(all.foreign.map((f) => f.path).sort(), [foreignRel, strayRel].sort(), 'found again')
    t.equal(
      w.alarms.length,
      4,
      'an entry alarms once, not at every sweep, until it is repaired or gone',
    )
    rmSync(foreign)
    rmSync(strayDir, { recursive: true })
    const r = await pop.sync.run({ verify: true }) // full verify also re-seals what lost its flags
    t.same(r.repair.repaired.sort(), [infos[1]!.path, infos[2]!.path].sort())
    t.same(pendingRepairs(pop.db), {})
    t.ok((await pop.store.verify()).ok)
  },
)

t.test('a lookup that meets a damaged file answers 503 and queues a repair', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const p0 = randomP0()
  const [info] = await core.addBlobs(1, [p0])
  const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-l')
  await pop.sync.run()
  const app = await buildPopApp({ pop })
  t.teardown(() => app.close())
  const file = join(pop.store.root, info!.path)
  openUp(file)
  const good = readFileSync(file)
  // the signature damaged: the payload route still serves the intact payload (it checks
  // header and sha256 against the index); the .cla route checks the signature and refuses
  const b = Buffer.from(good)
  b[b.length - 10] = b[b.length - 10]! ^ 1
  writeFileSync(file, b)
  t.equal((await app.inject({ url: `/api/v1/wl3/${p0}` })).statusCode, 200)
  const cla = await app.inject({ url: `/api/v1/wl3/${p0}/cla` })
  t.equal(cla.statusCode, 503)
  t.equal(cla.json().error.code, 'CLA_ERR_SYNC_DAMAGED')
  t.ok(pendingRepairs(pop.db)[info!.path], 'queued')
  // the payload damaged: refused on the payload route as well
  writeFileSync(file, good)
  await pop.sync.run()
  const c = readFileSync(file)
  openUp(file)
  c[c.length - 100] = c[c.length - 100]! ^ 1
  writeFileSync(file, c)
  pop.lookup.invalidate()
  const res = await app.inject({ url: `/api/v1/wl3/${p0}` })
  t.equal(res.statusCode, 503)
  t.equal(res.json().error.code, 'CLA_ERR_SYNC_DAMAGED')
  t.ok(pendingRepairs(pop.db)[info!.path], 'queued')
  await pop.sync.run()
  const ok = await app.inject({ url: `/api/v1/wl3/${p0}` })
  t.equal(ok.statusCode, 200, 'served again after the repair')
})

t.test('alarms and judged keep only the latest keepRecent entries', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  await core.addBlobs(2)
  const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-k')
  await pop.sync.run()
  const audited: string[] = []
  const w = new TreeWatch({
    popId: 'pop-k',
    store: pop.store,
    audit: (ev) => audited.push(String((ev.data as { path: string }).path)),
    settleMs: 1,
    sweepMs: 0,
    keepRecent: 3,
  })
  t.teardown(() => w.close())
  execFileSync('chattr', ['-a', pop.store.root], { stdio: 'ignore' })
  const swept = ['stray-1', 'stray-2', 'stray-3', 'stray-4', 'stray-5']
  for (const n of swept) writeFileSync(join(pop.store.root, n), 'x')
  await w.sweep()
  t.equal(audited.length, 5, 'every alarm is audited')
  t.same(
    w.alarms.map((a) => a.path),
    audited.slice(-3),
    'only the latest three are kept in memory',
  )

  await w.start()
  const live = ['live-1', 'live-2', 'live-3', 'live-4', 'live-5']
  for (const n of live) writeFileSync(join(pop.store.root, n), 'x')
  await until(() => live.every((n) => audited.includes(n)))
  t.equal(w.alarms.length, 3, 'alarms stay bounded')
  t.equal(w.judged.length, 3, 'judged stays bounded')
  t.ok(
    w.alarms.every((a) => live.includes(a.path)),
    'the latest alarms are the ones kept',
  )
})
