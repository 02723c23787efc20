// lib/pop-sync/agent.ts (PopSync), in-process with real parts: a core store served by the
// sync routes on 127.0.0.1, a POP store (real SQLite and files), real rsync. The promises
// of agent.ts's comments, asserted:
//   - status(): cursor, core store, last run, repairs pending, running
//   - run(): one run at a time, a second call joins the run in flight
//   - the check before the pull: a full verify when due or asked, else the quick check;
//     skipped while a watcher sees every change, but never on the first run
//   - damage found: alarm audited, repaired from the core, the agent's writes announced
//   - each run recorded (last_run, onRun) and reported to the core; a failed report does
//     not fail the run; a failed run is recorded, reported and rethrown, the last lag kept
//   - an abort (shutdown) in the check or the pull: CLA_ERR_SYNC_ABORTED, not a failed run
//   - an identity alarm: the run succeeds, the alarm is the recorded and reported error
//   - a blob that cannot be repaired fails the run after the pull (CLA_ERR_SYNC_PARTIAL)
//   - audit(): a write that fails is logged loudly and rethrown
import { chmodSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { listEvents, type AuditEventInput } from '../../../lib/audit/log.js'
import { listPopSyncStates } from '../../../lib/core-sync/pop-state.js'
import { isClavitorError, type ClavitorError } from '../../../lib/errors.js'
import { createLogger } from '../../../lib/log.js'
import { PopSync, type PopSyncOptions } from '../../../lib/pop-sync/agent.js'
import { plainHttpFeedClient, type FeedClient } from '../../../lib/pop-sync/transport.js'
import { encodeCursor } from '../../../lib/store/cursor.js'
import { BlobStore } from '../../../lib/store/index.js'
import {
  failure,
  indexOf,
  popStore,
  startCore,
  tempDir,
  unseal,
  type TestCore,
} from '../../fixtures/sync.js'

type Teardown = { teardown: (fn: () => void | Promise<void>) => void }

const POP = 'pop-a'

function popSync(core: TestCore, store: BlobStore, extra: Partial<PopSyncOptions> = {}): PopSync {
  core.registerPop(POP)
  return new PopSync({
    popId: POP,
    store,
    feed: plainHttpFeedClient(core.url, { 'x-pop-id': POP }),
    rsync: { source: core.root },
    stagingDir: join(store.root, '..', 'sync-staging'),
    pageSize: 5,
    ...extra,
  })
}

/** What the core recorded from this POP's reports. */
const coreView = (core: TestCore) =>
  listPopSyncStates(core.store.db).find((p) => p.id === POP)?.sync ?? null

/** Removes one of the POP's sealed files (an intruder, or a disk fault). */
function lose(store: BlobStore, path: string): void {
  const file = join(store.root, path)
  unseal(file)
  unseal(join(file, '..'))
  rmSync(file)
}

t.test('status, one run at a time, the run recorded and reported to the core', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const infos = await core.addBlobs(12)
  const store = await popStore(t, join(dir, 'pop'), core)
  const runs: unknown[] = []
  const writes: string[][] = []
  const done: string[][] = []
  const sync = popSync(core, store, {
    onRun: (r) => runs.push(r),
    onAgentWrite: (p) => writes.push([...p]),
    onAgentWriteDone: (p) => done.push([...p]),
  })
  t.same(sync.status(), {
    cursor: null,
    core_store_id: null,
    last_run: null,
    repairs_pending: 0,
    running: false,
  })
  t.equal(coreView(core), null, 'the core has no report yet')

  const first = sync.run()
  t.equal(sync.running, true)
  t.equal(sync.status().running, true)
  t.equal(sync.run(), first, 'a second call joins the run in flight')
  const res = await first
  t.equal(sync.running, false)
  t.match(res, { sealed: 12, already: 0, lag_us: 0, alarms: [], report_error: null })
  t.same(res.repair, { repaired: [], intact: [], failed: [] })

  const st = sync.status()
  t.equal(st.cursor, encodeCursor(infos[11]!))
  t.equal(st.core_store_id, core.store.storeId)
  t.match(st.last_run, { ok: true, error: null, lag_us: 0, sealed: 12, already: 0, alarms: [] })
  t.equal(st.repairs_pending, 0)
  t.same(runs, [{ ok: true, code: null, sealed: 12, trigger: 'manual' }], 'onRun told once')
  t.same(indexOf(store), indexOf(core.store))

  t.same(writes.flat().sort(), infos.map((i) => i.path).sort(), 'every write announced')
  t.same(done, writes, '…and each announced as done')

  t.match(coreView(core), { cursor: st.cursor, blobs: 12, last_error: null, lag_us: 0 })
  t.ok(coreView(core)?.last_success_at, 'the core saw a successful run')
})

t.test(
  'the check before the pull: full when due or asked, quick, or left to the watcher',
  async (t) => {
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    await core.addBlobs(3)
    const store = await popStore(t, join(dir, 'pop'), core)
    let watching = false
    const sync = popSync(core, store, { watching: () => watching })
    t.equal((await sync.run()).checked.mode, 'full', 'never verified: a full verify first')
    t.equal((await sync.run()).checked.mode, 'quick', 'verified today: the quick check')
    watching = true
    t.equal((await sync.run()).checked.mode, 'watch', 'a watcher sees every change: skipped')
    t.equal((await sync.run({ verify: true })).checked.mode, 'full', 'asked for')

    const restarted = popSync(core, store, { watching: () => true })
    t.equal(
      (await restarted.run()).checked.mode,
      'quick',
      'the first run of an agent still checks (changes made while nothing watched)',
    )
    const always = popSync(core, store, { fullVerifyEveryMs: 0 })
    t.equal((await always.run()).checked.mode, 'full')
    t.equal((await always.run()).checked.mode, 'full', 'every run when the cadence is 0')
  },
)

t.test('damage found: alarm audited, repaired from the core, the writes announced', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const infos = await core.addBlobs(6)
  const store = await popStore(t, join(dir, 'pop'), core)
  const writes: string[][] = []
  const sync = popSync(core, store, { onAgentWrite: (p) => writes.push([...p]) })
  await sync.run()
  const lost = infos[2]!.path
  lose(store, lost)
  writes.length = 0

  const res = await sync.run()
  t.same(res.checked, { mode: 'quick', bad: 1 })
  t.same(res.repair.repaired, [lost])
  t.same(writes, [[lost]], 'the repair announced before it writes')
  t.ok((await store.verify()).ok, 'the store verifies again')
  t.match(
    listEvents(store.db, {}).filter((e) => e.reason === 'store_damaged'),
    [{ kind: 'sync.alarm', actor: POP, outcome: 'alarm' }],
    'audited',
  )
  t.equal(sync.status().repairs_pending, 0)
})

t.test('a failed run is recorded, reported and rethrown; the last lag is kept', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  await core.addBlobs(4)
  const store = await popStore(t, join(dir, 'pop'), core)
  const runs: unknown[] = []
  const sync = popSync(core, store, { onRun: (r) => runs.push(r) })
  await sync.run()
  const cursor = sync.status().cursor
  const [bad] = await core.addBlobs(1)
  const file = join(core.root, bad!.path)
  unseal(file)
  chmodSync(file, 0o644)
  const buf = readFileSync(file)
  buf[buf.length - 70] = buf[buf.length - 70]! ^ 0x01
  writeFileSync(file, buf)

  const f = await failure(sync.run())
  t.equal(f.code, 'CLA_ERR_SYNC_VERIFY')
  t.equal(sync.running, false)
  const st = sync.status()
  t.equal(st.cursor, cursor, 'the cursor did not move')
  t.match(st.last_run, {
    ok: false,
    error: { code: 'CLA_ERR_SYNC_VERIFY' },
    lag_us: 0,
    sealed: 0,
    alarms: [],
  })
  t.same(runs[1], { ok: false, code: 'CLA_ERR_SYNC_VERIFY', sealed: 0, trigger: 'manual' })
  t.match(coreView(core), { cursor, last_error: /^CLA_ERR_SYNC_VERIFY: / }, 'the core was told')
})

t.test('an error that is not a ClavitorError is recorded as CLA_ERR_INTERNAL', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const store = await popStore(t, join(dir, 'pop'), core)
  const plain = plainHttpFeedClient(core.url, { 'x-pop-id': POP })
  const feed: FeedClient = {
    report: (s) => plain.report(s),
    page: () => Promise.reject(new TypeError('feed plug-in bug')),
  }
  const sync = popSync(core, store, { feed })
  const f = await failure(sync.run())
  t.equal(f.code, 'CLA_ERR_INTERNAL')
  t.match(f.message, /feed plug-in bug/)
  t.match(sync.status().last_run, { ok: false, error: { code: 'CLA_ERR_INTERNAL' } })
  t.match(coreView(core), { last_error: /^CLA_ERR_INTERNAL: / })
})

t.test('a report the core refuses does not fail the run', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  await core.addBlobs(2)
  const store = await popStore(t, join(dir, 'pop'), core)
  const plain = plainHttpFeedClient(core.url, { 'x-pop-id': POP })
  const feed: FeedClient = {
    page: (c, n) => plain.page(c, n),
    report: () => Promise.reject(new Error('core answered 503')),
  }
  const sync = popSync(core, store, { feed })
  const res = await sync.run()
  t.equal(res.sealed, 2)
  t.equal(res.report_error, 'core answered 503')
  t.match(sync.status().last_run, { ok: true, error: null }, 'recorded as a successful run')
})

t.test('an identity alarm: the run succeeds, the alarm is recorded and reported', async (t) => {
  const dir = tempDir(t)
  const coreDir = join(dir, 'core')
  let core = await startCore(t, coreDir)
  await core.addBlobs(3)
  const store = await popStore(t, join(dir, 'pop'), core)
  await popSync(core, store).run()
  await core.close()
  const idFile = join(coreDir, 'store.json')
  unseal(idFile)
  const identity = JSON.parse(readFileSync(idFile, 'utf8')) as { generation: number }
  writeFileSync(idFile, JSON.stringify({ ...identity, generation: identity.generation + 1 }))
  core = await startCore(t, coreDir)

  const sync = popSync(core, store)
  const res = await sync.run()
  t.same(
    res.alarms.map((a) => a.code),
    ['CLA_ERR_SYNC_STORE_MISMATCH'],
  )
  t.equal(res.already, 3)
  t.match(sync.status().last_run, {
    ok: true,
    error: { code: 'CLA_ERR_SYNC_STORE_MISMATCH' },
    alarms: [{ code: 'CLA_ERR_SYNC_STORE_MISMATCH' }],
  })
  t.match(
    coreView(core),
    { last_error: /^CLA_ERR_SYNC_STORE_MISMATCH: / },
    'the core sees the alarm',
  )
  t.ok(coreView(core)?.last_success_at, '…on a successful run')
})

t.test('a blob that cannot be repaired fails the run, after the pull', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const infos = await core.addBlobs(4)
  const store = await popStore(t, join(dir, 'pop'), core)
  const sync = popSync(core, store)
  await sync.run()
  const gone = infos[1]!.path
  lose(store, gone)
  // ...and the core lost it too (moved aside)
  unseal(join(core.root, gone, '..'))
  renameSync(join(core.root, gone), join(dir, 'aside.cla'))
  const fresh = await core.addBlobs(2)

  const f = await failure(sync.run())
  t.equal(f.code, 'CLA_ERR_SYNC_PARTIAL')
  t.match(f.details, { failed: [{ path: gone }] })
  t.ok(
    fresh.every((b) => store.index.byPath(b.path)),
    'the new blobs were pulled all the same',
  )
  t.equal(sync.status().repairs_pending, 1, 'still queued for the next run')
  t.match(sync.status().last_run, { ok: false, error: { code: 'CLA_ERR_SYNC_PARTIAL' } })
})

t.test('audit: a write that fails is logged loudly and rethrown', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const store = await popStore(t, join(dir, 'pop'), core)
  const lines: string[] = []
  const log = createLogger({ level: 'error', destination: { write: (s: string) => lines.push(s) } })
  const sync = popSync(core, store, { log })
  sync.audit({ kind: 'sync.alarm', actor: POP, outcome: 'alarm', reason: 'test' })
  t.equal(listEvents(store.db, { reason: 'test' }).length, 1, 'written to the audit log')
  t.equal(lines.length, 0)
  // a kind lib/audit/kinds.ts does not know (as a plain-JS caller could pass): refused
  t.throws(
    () =>
      sync.audit({ kind: 'no.such.kind' as AuditEventInput['kind'], actor: POP, outcome: 'alarm' }),
    {
      code: 'CLA_ERR_INVALID_INPUT',
    },
  )
  t.equal(lines.length, 1)
  t.match(JSON.parse(lines[0]!), { msg: 'audit log write failed', ev: { kind: 'no.such.kind' } })
})

t.test(
  'an abort during the quick check is CLA_ERR_SYNC_ABORTED and not a failed run',
  async (t) => {
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    await core.addBlobs(3)
    const store = await popStore(t, join(dir, 'pop'), core)
    const runs: unknown[] = []
    const sync = popSync(core, store, { onRun: (r) => runs.push(r) })
    await sync.run() // the first run: a full verify; the next one does the quick check
    const before = sync.status().last_run
    const reported = coreView(core)

    const f = await failure(sync.run({ signal: AbortSignal.abort() }))
    t.equal(f.code, 'CLA_ERR_SYNC_ABORTED', 'the same code as an abort during the pull')
    t.same(sync.status().last_run, before, 'not recorded as a failed run')
    t.equal(runs.length, 1, 'onRun (the failure metric) not told')
    t.same(coreView(core), reported, 'not reported to the core as a failure')
  },
)

t.test('an abort during the pull is not a failed run either', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  await core.addBlobs(3)
  const store = await popStore(t, join(dir, 'pop'), core)
  const runs: unknown[] = []
  const sync = popSync(core, store, { onRun: (r) => runs.push(r) })
  await sync.run()
  const before = sync.status().last_run
  const reported = coreView(core)
  await core.addBlobs(12)
  const ac = new AbortController()
  const f = await failure(sync.run({ signal: ac.signal, onProgress: () => ac.abort() }))
  t.equal(f.code, 'CLA_ERR_SYNC_ABORTED')
  t.same(sync.status().last_run, before, 'not recorded as a failed run')
  t.equal(runs.length, 1, 'onRun (the failure metric) not told')
  t.same(coreView(core), reported, 'not reported to the core as a failure')
  const res = await sync.run()
  t.ok(res.sealed > 0, 'the next run resumes')
})

t.test('a repair that throws still announces its write as done', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const infos = await core.addBlobs(3)
  const store = await popStore(t, join(dir, 'pop'), core)
  await popSync(core, store).run()
  const lost = infos[1]!.path
  lose(store, lost)
  // the repair's staging folder cannot be made: a file stands where its parent should be
  writeFileSync(join(dir, 'not-a-folder'), '')
  const writes: string[][] = []
  const done: string[][] = []
  const sync = popSync(core, store, {
    stagingDir: join(dir, 'not-a-folder', 'sync-staging'),
    onAgentWrite: (p) => writes.push([...p]),
    onAgentWriteDone: (p) => done.push([...p]),
  })
  const f = await failure(sync.run())
  t.equal(f.code, 'CLA_ERR_INTERNAL', 'the repair error still fails the run')
  t.match(sync.status().last_run, { ok: false, error: { code: 'CLA_ERR_INTERNAL' } })
  t.same(writes, [[lost]], 'the repair announced its write')
  t.same(done, writes, '…and announced it as done although it threw')
})
