// lib/pop-sync/bootstrap.ts and lib/store/tree-ingest.ts: an empty POP facing a large feed
// fills in bulk (whole-tree rsync in shard groups, every file checked against the signed
// log, one syncfs, shard folders renamed in, bulk seal, one index pass with the cursor),
// then pages on. Real core store, real rsync, real POP store (sealed when root).
import { execFileSync, spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import fg from 'fast-glob'
import t from 'tap'
import { childEnv } from '../../fixtures/child-env.js'
import { pullOnce } from '../../../lib/pop-sync/pull.js'
import { PopCursor } from '../../../lib/pop-sync/pop-cursor.js'
import { K_LAST_CHECK } from '../../../lib/pop-sync/repair.js'
import { getMeta } from '../../../lib/pop-sync/state.js'
import { BlobStore } from '../../../lib/store/index.js'
import { encodeCursor } from '../../../lib/store/cursor.js'
import {
  failure,
  indexOf,
  popStore,
  pullOptions,
  randomP0,
  startCore,
  tempDir,
  unseal,
} from '../../fixtures/sync.js'

const REPO = new URL('../../../', import.meta.url).pathname

t.test(
  'an empty POP fills in bulk: one feed pass, every blob sealed, indexed and chained',
  async (t) => {
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    const p0s = Array.from({ length: 150 }, () => randomP0())
    await core.addBlobs(400, p0s) // up to three versions a P0
    // a file the core's index does not publish (a registration that failed) and a stray file
    const stray = join(
      core.root,
      p0s[0]!.slice(0, 2),
      p0s[0]!,
      '0000000000000001_0000000000000000.cla',
    )
    unseal(join(core.root, p0s[0]!.slice(0, 2), p0s[0]!))
    writeFileSync(stray, 'not a blob')
    const pop = await popStore(t, join(dir, 'pop'), core)
    const progress: number[] = []
    const o = pullOptions(core, pop, {
      bootstrapMin: 1,
      onProgress: (p) => progress.push(p.sealed),
    })
    const before = Date.now()
    const res = await pullOnce(o)
    t.equal(res.sealed, 400)
    t.ok(
      Number(getMeta(pop.db, K_LAST_CHECK)) >= before,
      'the bulk fill counts as a check of every file it took (the next quick check reads none of them)',
    )
    t.equal(
      res.pages,
      2,
      'the bootstrap read the feed in one page of up to 5000, then one empty page',
    )
    t.equal(progress[0], 400, 'sealed in one bulk step')
    t.same(indexOf(pop), indexOf(core.store), 'exactly the core published blobs')
    t.equal(res.cursor, encodeCursor(core.store.index.head()!))
    t.equal(new PopCursor(pop.db).chain(), core.store.index.chainAt(core.store.index.head()!.seq))
    t.match(new PopCursor(pop.db).checkpoint(), { seq: core.store.index.head()!.seq })
    const v = await pop.verify()
    t.ok(v.ok, 'verify: every file, signature, seal and the chain')
    t.same(v.unindexed, [], 'the stray file did not come along')
    t.equal(
      fg.sync('**', { cwd: o.stagingDir }).filter((f) => !f.endsWith('.list')).length,
      0,
      'staging emptied',
    )
    const more = await core.addBlobs(7, p0s)
    const next = await pullOnce(pullOptions(core, pop, { bootstrapMin: 1 }))
    t.equal(next.sealed, more.length, 'a POP that holds blobs pages on as before')
    t.same(indexOf(pop), indexOf(core.store))
  },
)

t.test('a file that fails its entry stops the bulk fill there; paging refuses it', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  const infos = await core.addBlobs(60)
  const bad = infos[25]!
  const file = join(core.root, bad.path)
  unseal(file)
  chmodSync(file, 0o644)
  const bytes = readFileSync(file)
  bytes[bytes.length - 70] = bytes[bytes.length - 70]! ^ 1
  writeFileSync(file, bytes)
  const pop = await popStore(t, join(dir, 'pop'), core)
  const o = pullOptions(core, pop, { bootstrapMin: 1 })
  const f = await failure(pullOnce(o))
  t.equal(f.code, 'CLA_ERR_SYNC_VERIFY', 'the page-by-page pull after the bulk fill refuses it')
  t.equal(f.details?.path, bad.path)
  t.equal(pop.index.count(), 25, 'every blob before it, nothing after it')
  t.equal(new PopCursor(pop.db).token(), encodeCursor(infos[24]!))
  t.ok((await pop.verify()).ok)
})

t.test(
  "strays of every kind stay behind: found in rsync's own list, or by reading every folder when a name needed escaping",
  async (t) => {
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    // two P0s in shards of different rsync groups (8 groups of 32 shards)
    const group = (p0: string) => Math.floor(parseInt(p0.slice(0, 2), 16) / 32)
    let a = randomP0()
    let b = randomP0()
    while (group(b) === group(a)) b = randomP0()
    await core.addBlobs(40, [a, b])
    const put = (rel: string, bytes: string | Buffer = 'not a blob') => {
      const p = join(core.root, rel)
      mkdirSync(join(p, '..'), { recursive: true })
      writeFileSync(p, bytes)
      return rel
    }
    for (const p0 of [a, b]) unseal(join(core.root, p0.slice(0, 2)))
    const strays = [
      // group of a: every name printable (the list is used)
      put(`${a.slice(0, 2)}/${a}/0000000000000009_0000000000000000.cla`), // beside verified files
      put(`${a.slice(0, 2)}/${randomP0().replace(/^../, a.slice(0, 2))}/x.cla`), // a p0 folder of strays only
      put(`${a.slice(0, 2)}/junk`), // a file at shard level
      put(`${a.slice(0, 2)}/${a}/deeper/y.cla`), // a folder inside a p0 folder
      // group of b: a name rsync prints escaped (a newline): every folder is read instead
      put(`${b.slice(0, 2)}/${b}/line\nbreak.cla`),
      put(`${b.slice(0, 2)}/${b}/0000000000000009_0000000000000000.cla`),
    ]
    const pop = await popStore(t, join(dir, 'pop'), core)
    const res = await pullOnce(pullOptions(core, pop, { bootstrapMin: 1 }))
    t.equal(res.sealed, 40)
    t.same(indexOf(pop), indexOf(core.store), 'exactly the published blobs')
    const held = new Set(fg.sync('**', { cwd: pop.root, onlyFiles: false, dot: true }))
    for (const s of strays) t.notOk(held.has(s), `${JSON.stringify(s)} did not come along`)
    t.notOk(held.has(join(strays[1]!, '..')), 'nor the p0 folder that held only a stray')
    t.notOk(held.has(join(strays[3]!, '..')), 'nor a folder inside a p0 folder')
    t.notOk(
      [...held].some((h) => /junk|deeper|break|x\.cla$/.test(h)),
      'no stray name at all',
    )
    t.same((await pop.verify()).unindexed, [])
    t.ok((await pop.verify()).ok)
  },
)

/** An rsync that fails (exit 12, a lost connection) or waits for `go` on one group's list. */
function rsyncWrapper(dir: string, group: number, mode: 'fail' | 'hold'): string {
  const p = join(dir, `rsync-${mode}`)
  const hold = `touch ${join(dir, 'held')}; while [ ! -e ${join(dir, 'go')} ]; do sleep 0.05; done`
  writeFileSync(
    p,
    `#!/bin/sh\ncase "$*" in *tree-${group}.list*) ${mode === 'fail' ? 'echo "connection reset" >&2; exit 12' : hold};; esac\nexec rsync "$@"\n`,
  )
  chmodSync(p, 0o755)
  return p
}

t.test(
  "a sender that writes outside its group's shards: no later group trusts its rsync list",
  async (t) => {
    // An rsync before 3.2.5 (or --trust-sender) lets a lying sender write where it was not
    // asked. Here group 0's run also writes a file into shard f0 (group 7) and reports it,
    // with exit 23 (so group 0 reads its own folders, not its list). Group 7's rsync never
    // lists that file (the core has no such file), so a group that trusted its list would
    // keep it, and the whole shard folder, stray and all, would move into the store.
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    const target = randomP0().replace(/^../, 'f0')
    await core.addBlobs(12, [target, randomP0().replace(/^../, '05')])
    const stray = `f0/${target}/0000000000000009_0000000000000000.cla`
    const wrapper = join(dir, 'rsync-lying')
    writeFileSync(
      wrapper,
      [
        '#!/bin/sh',
        'for a; do dest=$a; done',
        'case "$*" in',
        `  *tree-0.list*) rsync "$@" || exit $?`,
        `    mkdir -p "$dest/f0/${target}" && printf 'not a blob' > "$dest/${stray}"`,
        `    echo '${stray}'; exit 23;;`,
        'esac',
        'exec rsync "$@"',
        '',
      ].join('\n'),
    )
    chmodSync(wrapper, 0o755)
    const pop = await popStore(t, join(dir, 'pop'), core)
    const o = pullOptions(core, pop, { bootstrapMin: 1 })
    o.rsync = { ...o.rsync, rsyncPath: wrapper }
    const res = await pullOnce(o)
    t.equal(res.sealed, 12)
    t.same(indexOf(pop), indexOf(core.store), 'exactly the published blobs')
    t.notOk(existsSync(join(pop.root, stray)), 'the planted file did not come along')
    const v = await pop.verify()
    t.same(v.unindexed, [], 'no file without its row')
    t.ok(v.ok)
  },
)

t.test(
  'an rsync run that fails mid-bootstrap: what arrived is kept, the rest comes page by page',
  async (t) => {
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    // P0s in every group, a few in group 5 (shards a0..bf), whose rsync fails
    const p0s = Array.from({ length: 40 }, (_, i) =>
      i < 4 ? randomP0().replace(/^../, `a${i}`) : randomP0(),
    )
    await core.addBlobs(48, p0s)
    const pop = await popStore(t, join(dir, 'pop'), core)
    let bulk: { sealed: number; left: number } | undefined
    const o = pullOptions(core, pop, { bootstrapMin: 1, onBootstrap: (b) => (bulk = b) })
    o.rsync = { ...o.rsync, rsyncPath: rsyncWrapper(dir, 5, 'fail') }
    const res = await pullOnce(o)
    t.ok(bulk && bulk.left > 0, 'the bulk fill left what it did not get to the pages')
    t.equal(res.sealed, 48, 'every blob, in one run')
    t.same(indexOf(pop), indexOf(core.store))
    t.ok((await pop.verify()).ok)
  },
)

t.test('an abort during the bootstrap stops its rsync; the next run converges', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  await core.addBlobs(48)
  const pop = await popStore(t, join(dir, 'pop'), core)
  const ac = new AbortController()
  const o = pullOptions(core, pop, { bootstrapMin: 1, signal: ac.signal })
  o.rsync = { ...o.rsync, rsyncPath: rsyncWrapper(dir, 3, 'hold') }
  const run = failure(pullOnce(o))
  while (!existsSync(join(dir, 'held'))) await new Promise((r) => setTimeout(r, 10))
  ac.abort()
  t.equal((await run).code, 'CLA_ERR_SYNC_ABORTED')
  const left = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
    .split('\n')
    .filter(
      (l) =>
        l.includes(join(dir, 'rsync-hold')) || (l.includes(join(dir, 'pop')) && /^rsync /.test(l)),
    )
  t.same(left, [], 'no rsync of the bootstrap left running')
  t.equal(pop.index.count(), 0, 'nothing indexed by the aborted bootstrap')
  writeFileSync(join(dir, 'go'), '')
  const again = await pullOnce(pullOptions(core, pop, { bootstrapMin: 1 }))
  t.equal(again.sealed, 48)
  t.same(indexOf(pop), indexOf(core.store))
  t.ok((await pop.verify()).ok)
})

/** Runs the bootstrap child, SIGKILLs it when `when()` says so (checked every 2 ms). */
function runAndKill(
  popDir: string,
  coreUrl: string,
  coreRoot: string,
  when: () => boolean,
): Promise<{ killed: boolean; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        `file://${REPO}node_modules/tsx/dist/loader.mjs`,
        join(REPO, 'test/fixtures/bootstrap-child.ts'),
        popDir,
        coreUrl,
        coreRoot,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: childEnv(),
      },
    )
    let out = ''
    let err = ''
    let killed = false
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const poll = setInterval(() => {
      if (!killed && when()) {
        killed = true
        child.kill('SIGKILL')
      }
    }, 2)
    child.on('exit', (code, signal) => {
      clearInterval(poll)
      if (signal === 'SIGKILL' || code === 0) resolve({ killed: signal === 'SIGKILL', out })
      else reject(new Error(`bootstrap child exited ${code}: ${err}`))
    })
  })
}

t.test(
  'a bootstrap killed (SIGKILL) at each phase: the next run converges, nothing lost or mixed',
  async (t) => {
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    core.registerPop('pop-t')
    await core.addBlobs(800)
    const phases: Array<[string, (popDir: string) => boolean]> = [
      [
        'while rsync fills the staging tree',
        (d) => existsSync(join(d, 'sync-staging', 'tree', '40')),
      ],
      [
        'after shard folders moved in, before the index commit',
        (d) => SHARD_FILLED(join(d, 'store')),
      ],
    ]
    for (const [phase, when] of phases) {
      const popDir = join(dir, `pop-${phases.findIndex((p) => p[0] === phase)}`)
      mkdirSync(popDir)
      await (await popStore(t, popDir, core)).close()
      const run = await runAndKill(popDir, core.url, core.root, () => when(popDir))
      t.ok(run.killed || run.out.startsWith('done'), `${phase}: killed or done`)
      // the next run: the store heals at open (a stale writer lock), the pull goes on
      const pop = await BlobStore.open({ dataDir: popDir, onWarning: () => {} })
      t.teardown(() => pop.close())
      const res = await pullOnce(pullOptions(core, pop, { bootstrapMin: 1 }))
      t.same(indexOf(pop), indexOf(core.store), `${phase}: exactly the core's blobs`)
      const rep = await pop.verify()
      t.ok(rep.ok, `${phase}: verify ok (files, seals, chain)`, {
        rep: { ...rep, unsealed: rep.unsealed.slice(0, 5), corrupt: rep.corrupt.slice(0, 3) },
      })
      t.equal(res.cursor, encodeCursor(core.store.index.head()!), `${phase}: caught up`)
      t.comment(
        `${phase}: killed=${run.killed}, then sealed ${res.sealed}, already held ${res.already}`,
      )
    }
  },
)

function SHARD_FILLED(root: string): boolean {
  try {
    return readdirSync(join(root, 'ff')).length > 0
  } catch {
    return false
  }
}
