// lib/pop-sync/pull.ts, in-process with real parts: a core store served by the sync routes
// on 127.0.0.1, a POP store (real SQLite, real files), real rsync from the core's store
// root. Each promise of pull.ts's comments, asserted:
//   - pages are sealed and indexed in feed order until caught up; progress per page
//   - the cursor moves with the index rows it covers, never past a blob not sealed here
//   - an empty feed: nothing to do, the core store followed is recorded
//   - what a crash left in staging is cleared; a sealed page's folder is removed
//   - a bad file is refused (CLA_ERR_SYNC_VERIFY) and audited, the blobs before it sealed
//   - a listed blob that does not arrive stops the run (CLA_ERR_SYNC_PARTIAL) before it
//   - a staged file that changed after verification: the page is sealed file by file
//   - a full disk is named as such; a shutdown stops after the page being sealed
//   - a core listing a blob at or before the cursor is refused (CLA_ERR_SYNC_FEED)
//   - the core's store id / generation changed, or the cursor is ahead of the core's
//     head: an alarm (warned, audited), a re-baseline, held blobs counted, not fetched;
//     a held blob with other content is a conflict (CLA_ERR_SYNC_CONFLICT), nothing mixed
import { execFileSync } from 'node:child_process'
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  utimesSync,
  writeFileSync,
} from 'node:fs'
import { join } from 'node:path'
import fg from 'fast-glob'
import t from 'tap'
import type { AuditEventInput } from '../../../lib/audit/log.js'
import { isClavitorError, type ClavitorError } from '../../../lib/errors.js'
import { pullOnce, type PullOptions, type PullProgress } from '../../../lib/pop-sync/pull.js'
import { PopCursor } from '../../../lib/pop-sync/pop-cursor.js'
import { plainHttpFeedClient, type FeedClient } from '../../../lib/pop-sync/transport.js'
import { blobIndex } from '../../../lib/store/blob-index.js'
import { decodeCursor, encodeCursor } from '../../../lib/store/cursor.js'
import { BlobStore } from '../../../lib/store/index.js'
import {
  failure,
  feedOf,
  indexOf,
  pullOptions as options,
  popStore,
  startCore,
  tempDir,
  unseal,
  type TestCore,
} from '../../fixtures/sync.js'

type Teardown = { teardown: (fn: () => void | Promise<void>) => void }

/** Flips one payload byte of a core file in place (same size); returns the original. */
function damage(file: string): Buffer {
  unseal(file)
  chmodSync(file, 0o644)
  const original = readFileSync(file)
  const bad = Buffer.from(original)
  bad[bad.length - 70] = bad[bad.length - 70]! ^ 0x01
  writeFileSync(file, bad)
  return original
}

/** .cla files present in a store tree (indexed or not). */
const claFiles = (root: string) => fg.sync('**/*.cla', { cwd: root }).length

t.test('empty feed: one page, nothing sealed, the core store followed is recorded', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const pop = await popStore(t, join(dir, 'pop'), core)
  const progress: PullProgress[] = []
  const res = await pullOnce(options(core, pop, { onProgress: (p) => progress.push(p) }))
  t.same(res, {
    sealed: 0,
    already: 0,
    pages: 1,
    cursor: null,
    head: null,
    lag_us: 0,
    alarms: [],
  })
  t.same(progress, [{ sealed: 0, already: 0, page: 0, remaining: 0, cursor: null, head: null }])
  t.same(new PopCursor(pop.db).core(), {
    storeId: core.store.storeId,
    generation: core.store.generation,
  })
})

t.test('pages sealed in order until caught up; the cursor moves with the index', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const infos = await core.addBlobs(23)
  const pop = await popStore(t, join(dir, 'pop'), core)
  const o = options(core, pop)
  // what a crash left in staging
  mkdirSync(join(o.stagingDir, 'run-1'), { recursive: true })
  writeFileSync(join(o.stagingDir, 'run-1', 'leftover.cla'), 'half a blob')

  const progress: PullProgress[] = []
  const atProgress: Array<{ indexed: number; head: string | null }> = []
  const res = await pullOnce({
    ...o,
    onProgress: (p) => {
      progress.push(p)
      const head = blobIndex(pop.db).head()
      atProgress.push({ indexed: pop.index.count(), head: head && encodeCursor(head) })
    },
  })
  t.equal(res.sealed, 23)
  t.equal(res.already, 0)
  t.equal(res.pages, 5, 'pages of 5: 5+5+5+5+3')
  t.equal(res.cursor, encodeCursor(infos[22]!))
  t.same(res.head, decodeCursor(encodeCursor(infos[22]!)), "the core's head")
  t.equal(res.lag_us, 0, 'caught up')
  t.same(res.alarms, [])
  t.same(
    progress.map((p) => [p.sealed, p.page, p.remaining, p.cursor]),
    [
      [5, 5, 18, encodeCursor(infos[4]!)],
      [10, 5, 13, encodeCursor(infos[9]!)],
      [15, 5, 8, encodeCursor(infos[14]!)],
      [20, 5, 3, encodeCursor(infos[19]!)],
      [23, 3, 0, encodeCursor(infos[22]!)],
    ],
    'progress after each page',
  )
  t.same(
    atProgress,
    progress.map((p) => ({ indexed: p.sealed, head: p.cursor })),
    'at each step the cursor is the newest blob indexed here, never ahead of it',
  )
  t.same(indexOf(pop), indexOf(core.store), 'the POP indexes what the core does')
  t.equal(claFiles(pop.root), 23)
  t.ok((await pop.verify()).ok, 'every sealed blob verifies')
  t.notOk(existsSync(join(o.stagingDir, 'run-1', 'leftover.cla')), 'staging leftovers cleared')
  t.same(
    readdirSync(o.stagingDir).filter((f) => f.startsWith('run-')),
    [],
    "each sealed page's folder removed",
  )

  const again = await pullOnce(o)
  t.match(again, { sealed: 0, already: 0, pages: 1, cursor: res.cursor, lag_us: 0 })
  const more = await core.addBlobs(2)
  const inc = await pullOnce(o)
  t.match(inc, { sealed: 2, already: 0, cursor: encodeCursor(more[1]!) }, 'only the new ones')
})

t.test('a bad file is refused and audited; the blobs before it are sealed', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const infos = await core.addBlobs(12)
  const target = infos[7]! // third of page 2
  const file = join(core.root, target.path)
  const original = damage(file)
  const pop = await popStore(t, join(dir, 'pop'), core)
  const o = options(core, pop)
  const f = await failure(pullOnce(o))
  t.equal(f.code, 'CLA_ERR_SYNC_VERIFY')
  t.equal(f.details?.path, target.path)
  t.equal(new PopCursor(pop.db).token(), encodeCursor(infos[6]!), 'the cursor right before it')
  t.equal(pop.index.count(), 7, 'the blobs before it sealed and indexed')
  t.notOk(pop.index.byPath(target.path), 'the bad one is not indexed')
  t.equal(claFiles(pop.root), 7, 'nothing staged after it is visible in the store')
  t.match(
    o.audits,
    [
      {
        kind: 'sync.alarm',
        outcome: 'refused',
        reason: 'CLA_ERR_SYNC_VERIFY',
        data: { path: target.path },
      },
    ],
    'reported once',
  )
  t.equal(o.audits.length, 1)

  writeFileSync(file, original)
  const r = await pullOnce(o)
  t.equal(r.sealed, 5, 'the next run resumes from the cursor')
  t.same(indexOf(pop), indexOf(core.store))
})

t.test('a listed blob that does not arrive stops the run before it', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const infos = await core.addBlobs(8)
  const target = infos[3]!
  const file = join(core.root, target.path)
  const aside = join(dir, 'aside.cla')
  unseal(join(file, '..'))
  renameSync(file, aside)
  const pop = await popStore(t, join(dir, 'pop'), core)
  const o = options(core, pop, { pageSize: 100 })
  const f = await failure(pullOnce(o))
  t.equal(f.code, 'CLA_ERR_SYNC_PARTIAL')
  t.match(f.details, { rsync_exit: 23, reason: 'partial' }, "rsync's exit named")
  t.equal(new PopCursor(pop.db).token(), encodeCursor(infos[2]!), 'the cursor right before it')
  t.equal(pop.index.count(), 3)
  t.equal(claFiles(pop.root), 3)

  renameSync(aside, file)
  t.equal((await pullOnce(o)).sealed, 5, 'the next run fetches the rest')
  t.same(indexOf(pop), indexOf(core.store))
})

t.test('a staged file changed after verification: the page is sealed file by file', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const infos = await core.addBlobs(10)
  const touched = infos[1]! // page 1: only its times change
  const damaged = infos[7]! // page 2: its bytes change
  const pop = await popStore(t, join(dir, 'pop'), core)
  let armed = true
  // The POP store as pull sees it, with the change made right after verification.
  const store: PullOptions['store'] = {
    root: pop.root,
    trustedKeys: pop.trustedKeys,
    ingest: (staged, io) => pop.ingest(staged, io),
    async verifyStaged(staged) {
      const v = await pop.verifyStaged(staged)
      for (const s of armed ? staged : []) {
        if (s.expect?.path === touched.path) utimesSync(s.file, 1, 1)
        if (s.expect?.path === damaged.path) damage(s.file)
      }
      return v
    },
  }
  const o = options(core, pop, { store })
  const f = await failure(pullOnce(o))
  t.equal(f.code, 'CLA_ERR_SYNC_VERIFY', 'the changed bytes are refused')
  t.equal(f.details?.path, damaged.path)
  t.equal(pop.index.count(), 7, 'page 1 whole (the touched file verified again), 2 of page 2')
  t.ok(pop.index.byPath(touched.path), 'the touched file is sealed')
  t.equal(new PopCursor(pop.db).token(), encodeCursor(infos[6]!), 'the cursor right before it')
  t.equal(claFiles(pop.root), 7)
  armed = false
  t.equal((await pullOnce(o)).sealed, 3)
  t.same(indexOf(pop), indexOf(core.store))
  t.ok((await pop.verify()).ok)
})

t.test(
  'a full disk while sealing is named; the cursor stays at the last page sealed',
  async (t) => {
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    const infos = await core.addBlobs(10)
    const pop = await popStore(t, join(dir, 'pop'), core)
    let ingests = 0
    const store: PullOptions['store'] = {
      root: pop.root,
      trustedKeys: pop.trustedKeys,
      verifyStaged: (staged) => pop.verifyStaged(staged),
      ingest(staged, io) {
        if (++ingests === 2)
          return Promise.reject(
            Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }),
          )
        return pop.ingest(staged, io)
      },
    }
    const o = options(core, pop, { store })
    const f = await failure(pullOnce(o))
    t.equal(f.code, 'CLA_ERR_SYNC_DISK_FULL')
    t.equal(ingests, 2, 'not retried file by file')
    t.equal(new PopCursor(pop.db).token(), encodeCursor(infos[4]!))
    t.equal(pop.index.count(), 5)
    t.equal((await pullOnce(o)).sealed, 5, 'space back: the next run resumes')
  },
)

t.test('a shutdown stops the run after the page being sealed; the next run resumes', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const infos = await core.addBlobs(12)
  const pop = await popStore(t, join(dir, 'pop'), core)
  const ac = new AbortController()
  const o = options(core, pop)
  const f = await failure(pullOnce({ ...o, signal: ac.signal, onProgress: () => ac.abort() }))
  t.equal(f.code, 'CLA_ERR_SYNC_ABORTED')
  t.equal(new PopCursor(pop.db).token(), encodeCursor(infos[4]!), 'the first page kept')
  t.equal(pop.index.count(), 5)
  t.equal(claFiles(pop.root), 5, 'nothing staged ahead became visible')
  const r = await pullOnce(o)
  t.equal(r.sealed, 7)
  t.same(indexOf(pop), indexOf(core.store))
})

t.test('a core that lists a blob at or before the cursor is refused', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const infos = await core.addBlobs(8)
  const pop = await popStore(t, join(dir, 'pop'), core)
  const plain = feedOf(core)
  // a core that ignores the cursor it is asked for
  const feed: FeedClient = { report: (s) => plain.report(s), page: (_c, n) => plain.page(null, n) }
  const f = await failure(pullOnce(options(core, pop, { feed })))
  t.equal(f.code, 'CLA_ERR_SYNC_FEED')
  t.equal(new PopCursor(pop.db).token(), encodeCursor(infos[4]!), 'the first page kept')
  t.equal(pop.index.count(), 5)
})

t.test(
  "the core's store generation changed: alarm, re-baseline, held blobs not fetched",
  async (t) => {
    const dir = tempDir(t)
    const coreDir = join(dir, 'core')
    let core = await startCore(t, coreDir)
    await core.addBlobs(6)
    const pop = await popStore(t, join(dir, 'pop'), core)
    await pullOnce(options(core, pop))
    await core.close()
    // the core's store rebuilt: same store, next generation
    const idFile = join(coreDir, 'store.json')
    unseal(idFile)
    const identity = JSON.parse(readFileSync(idFile, 'utf8')) as { generation: number }
    writeFileSync(idFile, JSON.stringify({ ...identity, generation: identity.generation + 1 }))
    core = await startCore(t, coreDir)
    t.equal(core.store.generation, identity.generation + 1)
    const added = await core.addBlobs(3)

    const o = options(core, pop)
    const r = await pullOnce(o)
    t.same(
      r.alarms.map((a) => [a.code, a.details]),
      [
        [
          'CLA_ERR_SYNC_STORE_MISMATCH',
          { recorded_generation: identity.generation, core_generation: identity.generation + 1 },
        ],
      ],
      'said so',
    )
    t.equal(o.warnings.length, 1, 'warned')
    t.match(o.warnings[0], /generation changed/)
    t.match(o.audits, [
      { kind: 'sync.alarm', outcome: 'alarm', reason: 'CLA_ERR_SYNC_STORE_MISMATCH' },
    ])
    t.equal(r.already, 6, 'every listed blob held here counted, not fetched again')
    t.equal(r.sealed, 3, 'the new ones sealed')
    t.equal(r.cursor, encodeCursor(added[2]!))
    t.same(new PopCursor(pop.db).core(), {
      storeId: core.store.storeId,
      generation: identity.generation + 1,
    })
    t.same(indexOf(pop), indexOf(core.store))
    const quiet = options(core, pop)
    t.same((await pullOnce(quiet)).alarms, [], 'the new generation is followed: no alarm again')
    t.same(quiet.audits, [])
  },
)

t.test('the core restored from a backup: the cursor is ahead, re-baselined', async (t) => {
  const dir = tempDir(t)
  const coreDir = join(dir, 'core')
  let core = await startCore(t, coreDir)
  const kept = await core.addBlobs(4)
  await core.close()
  const backup = join(dir, 'backup')
  cpSync(coreDir, backup, { recursive: true })
  core = await startCore(t, coreDir)
  await core.addBlobs(3)
  const pop = await popStore(t, join(dir, 'pop'), core)
  await pullOnce(options(core, pop))
  await core.close()

  const restored = await startCore(t, backup)
  const o = options(restored, pop)
  const r = await pullOnce(o)
  t.same(
    r.alarms.map((a) => a.code),
    ['CLA_ERR_SYNC_CURSOR_AHEAD'],
  )
  t.match(o.audits, [{ reason: 'CLA_ERR_SYNC_CURSOR_AHEAD' }])
  t.equal(r.sealed, 0)
  t.equal(r.already, 4)
  t.equal(new PopCursor(pop.db).token(), encodeCursor(kept[3]!), 'at the restored head')
})

t.test(
  'another store: re-baselined, then a held blob with other content is a conflict',
  async (t) => {
    const dir = tempDir(t)
    const coreA = await startCore(t, join(dir, 'core-a'))
    const coreB = await startCore(t, join(dir, 'core-b'))
    await coreA.addBlobs(4)
    await coreB.addBlobs(4)
    const pop = await popStore(t, join(dir, 'pop'), coreA)
    await pullOnce(options(coreA, pop))
    const before = indexOf(pop)

    const untrusted = options(coreB, pop)
    const u = await failure(pullOnce(untrusted))
    t.equal(
      u.code,
      'CLA_ERR_SYNC_CHECKPOINT',
      "B's checkpoints are signed by a key not trusted here",
    )
    t.same(indexOf(pop), before, 'nothing of B sealed')

    pop.trustKey(coreB.store.publicKey!) // an operator trusts B too: B's blobs still conflict
    const o = options(coreB, pop)
    const f = await failure(pullOnce(o))
    t.equal(f.code, 'CLA_ERR_SYNC_CONFLICT')
    t.same(
      untrusted.audits.map((a) => a.reason),
      ['CLA_ERR_SYNC_STORE_MISMATCH', 'CLA_ERR_SYNC_CHECKPOINT'],
      'the new store and its untrusted checkpoint audited',
    )
    t.same(
      o.audits.map((a) => a.reason),
      ['CLA_ERR_SYNC_CONFLICT'],
      'the conflict audited',
    )
    t.same(indexOf(pop), before, 'still exactly store A')
    t.equal(new PopCursor(pop.db).token(), null, 'the cursor back at the start')
    t.equal(new PopCursor(pop.db).core().storeId, coreB.store.storeId, 'B followed from now on')
  },
)
