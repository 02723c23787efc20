// Core and two POPs on this machine converge through real rsync (local path source),
// real SQLite and real HTTP on 127.0.0.1; then a POP that lost files gets them back.
import t from 'tap'
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { buildPopApp } from '../../pop-agent/app.js'
import { listPopSyncStates } from '../../lib/core-sync/pop-state.js'
import { listEvents } from '../../lib/audit/log.js'
import { indexOf, isRoot, openTestPop, randomP0, startCore, tempDir } from '../fixtures/sync.js'

t.test('core and two POPs converge; incremental runs fetch only the new blobs', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const shared = [randomP0(), randomP0(), randomP0()]
  await core.addBlobs(40)
  await core.addBlobs(9, shared) // 3 versions each of 3 P0s
  const a = await openTestPop(t, core, join(dir, 'pop-a'), 'pop-a', { pageSize: 7 })
  const b = await openTestPop(t, core, join(dir, 'pop-b'), 'pop-b', { pageSize: 1000 })
  const ra = await a.sync.run()
  const rb = await b.sync.run()
  t.equal(ra.sealed, 49)
  t.ok(ra.pages >= 7, `pop-a paged (${ra.pages} pages of 7)`)
  t.equal(rb.sealed, 49)
  t.equal(ra.lag_us, 0)
  t.same(indexOf(a.store), indexOf(core.store), 'pop-a index equals the core')
  t.same(indexOf(b.store), indexOf(core.store), 'pop-b index equals the core')
  const va = await a.store.verify()
  t.ok(va.ok, 'pop-a verifies')
  if (isRoot && a.store.sealing) t.equal(va.unsealed.length, 0, 'pop-a files sealed')

  // the core sees both POPs
  const pops = listPopSyncStates(core.store.db)
  t.same(
    pops.map((p) => [p.id, p.sync?.lag_us, p.sync?.blobs]),
    [
      ['pop-a', 0, 49],
      ['pop-b', 0, 49],
    ],
  )

  // incremental: only the new ones
  await core.addBlobs(5, shared)
  const ra2 = await a.sync.run()
  t.equal(ra2.sealed, 5, 'five new blobs sealed')
  t.equal(ra2.already, 0, 'nothing fetched twice')
  const ra3 = await a.sync.run()
  t.equal(ra3.sealed, 0, 'caught up: nothing to do')

  // lookups from the POP's own store
  const app = await buildPopApp({ pop: a })
  t.teardown(() => app.close())
  const latest = core.store.latest(shared[0]!)!
  const res = await app.inject({ url: `/api/v1/wl3/${shared[0]}` })
  t.equal(res.statusCode, 200)
  t.equal(res.headers.etag, `"${latest.sha256}"`)
  t.same(res.rawPayload, await core.store.readPayload(latest))
  const again = await app.inject({
    url: `/api/v1/wl3/${shared[0]}`,
    headers: { 'if-none-match': `"${latest.sha256}"` },
  })
  t.equal(again.statusCode, 304)
  const cla = await app.inject({ url: `/api/v1/wl3/${shared[0]}/cla` })
  t.same(cla.rawPayload, readFileSync(join(core.root, latest.path)), 'the signed .cla itself')
  const versions = await app.inject({ url: `/api/v1/wl3/${shared[0]}/versions` })
  t.equal(versions.json().versions.length, 5)
  t.equal((await app.inject({ url: '/api/v1/wl3/XYZ' })).json().error.code, 'CLA_ERR_INVALID_P0')
  t.equal((await app.inject({ url: '/api/v1/wl3/abc' })).statusCode, 400)
  t.equal((await app.inject({ url: `/api/v1/wl3/${randomP0()}` })).statusCode, 404)
  const health = (await app.inject({ url: '/healthz' })).json()
  t.equal(health.cursor, a.sync.status().cursor)
  t.equal(health.lag_us, 0)
  t.equal(health.blobs, 54)
})

t.test('a POP whose store lost or damaged a file gets it back from the core', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const infos = await core.addBlobs(12)
  const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-r', { pageSize: 5 })
  await pop.sync.run()
  const lost = infos[3]!
  const damaged = infos[7]!
  const lostFile = join(pop.store.root, lost.path)
  const damagedFile = join(pop.store.root, damaged.path)
  // an intruder (root) clears the flags and removes / edits files
  execFileSync('chattr', ['-i', lostFile, damagedFile], { stdio: 'ignore' })
  execFileSync('chattr', ['-a', join(lostFile, '..')], { stdio: 'ignore' })
  rmSync(lostFile)
  const buf = readFileSync(damagedFile)
  buf[buf.length - 100] = buf[buf.length - 100]! ^ 0xff
  writeFileSync(damagedFile, buf)
  const v = await pop.store.verify()
  t.same(v.missing, [lost.path], 'store verify finds the missing file')
  t.same(
    v.corrupt.map((c) => c.path),
    [damaged.path],
    'and the damaged one',
  )

  const r = await pop.sync.run({ verify: true })
  t.same(r.repair.repaired.sort(), [lost.path, damaged.path].sort(), 'both repaired')
  t.equal(r.checked.bad, 2)
  t.ok(existsSync(lostFile))
  const v2 = await pop.store.verify()
  t.ok(v2.ok, 'verifies again')
  t.same(readFileSync(damagedFile), readFileSync(join(core.root, damaged.path)))
  t.ok(existsSync(join(pop.dataDir, 'quarantine')), 'damaged copy kept in quarantine')
  const events = listEvents(pop.db, {}).map((e) => `${e.kind}:${e.reason}`)
  t.ok(events.includes('sync.repair:quarantined'))
  t.ok(events.includes('sync.repair:repaired'))

  // a missing file is found by the quick check alone (no full verify)
  const again = join(pop.store.root, infos[0]!.path)
  execFileSync('chattr', ['-i', again], { stdio: 'ignore' })
  execFileSync('chattr', ['-a', join(again, '..')], { stdio: 'ignore' })
  renameSync(again, join(dir, 'gone.cla'))
  const r2 = await pop.sync.run()
  t.equal(r2.checked.mode, 'quick')
  t.same(r2.repair.repaired, [infos[0]!.path])
  t.ok((await pop.store.verify()).ok)

  // same-size damage (one byte flipped in 5 files) is found by the next plain run too:
  // changing a sealed file moves its ctime, and the quick check reads what moved
  const flipped = infos.slice(3, 8).map((i) => i.path)
  for (const rel of flipped) {
    const f = join(pop.store.root, rel)
    execFileSync('chattr', ['-i', f], { stdio: 'ignore' })
    const bytes = readFileSync(f)
    bytes[bytes.length - 90] = bytes[bytes.length - 90]! ^ 0x20
    writeFileSync(f, bytes)
  }
  const r3 = await pop.sync.run()
  t.same([r3.checked.mode, r3.checked.bad], ['quick', 5], 'the quick check finds all 5')
  t.same(r3.repair.repaired.sort(), [...flipped].sort(), '5 of 5 repaired without --verify')
  t.ok((await pop.store.verify()).ok)
})
