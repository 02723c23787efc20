// Faults on the way: a file corrupted on the core after it was listed, a listed file
// missing on the core, a POP pointed at another store, a core restored from a backup.
import t from 'tap'
import { copyFileSync, cpSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execFileSync } from 'node:child_process'
import { listEvents } from '../../lib/audit/log.js'
import { isClavitorError } from '../../lib/errors.js'
import { decodeCursor, encodeCursor } from '../../lib/store/cursor.js'
import { getMeta, K_CURSOR } from '../../lib/pop-sync/state.js'
import { plainHttpFeedClient, type FeedClient } from '../../lib/pop-sync/transport.js'
import { indexOf, openTestPop, startCore, tempDir, unseal } from '../fixtures/sync.js'

function unsealFile(file: string): void {
  try {
    execFileSync('chattr', ['-i', file], { stdio: 'ignore' })
  } catch {
    // not sealed
  }
}

/** Flips one payload byte of a core file in place (same size); returns the original bytes. */
function damage(file: string): Buffer {
  const original = readFileSync(file)
  unsealFile(file)
  const bad = Buffer.from(original)
  bad[bad.length - 70] = bad[bad.length - 70]! ^ 0x01
  writeFileSync(file, bad)
  return original
}

async function failure(
  p: Promise<unknown>,
): Promise<{ code: string; details: Record<string, unknown> }> {
  try {
    await p
  } catch (err) {
    if (isClavitorError(err)) return { code: err.code, details: err.details ?? {} }
    throw err
  }
  throw new Error('expected a failure')
}

t.test(
  'a file corrupted on the core after it was listed is refused; the cursor stays before it',
  async (t) => {
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    const infos = await core.addBlobs(20)
    const target = infos[12]!
    const targetFile = join(core.root, target.path)
    const original = readFileSync(targetFile)
    // Fault injection: the feed answers, THEN the file on the core is damaged (same size).
    const plain = plainHttpFeedClient(core.url, { 'x-pop-id': 'pop-c' })
    let armed = true
    const feed: FeedClient = {
      report: (s) => plain.report(s),
      async page(cursor, limit) {
        const page = await plain.page(cursor, limit)
        if (armed && page.items.some((i) => i.path === target.path)) {
          damage(targetFile)
          armed = false
        }
        return page
      },
    }
    const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-c', { feed, pageSize: 5 })
    const f = await failure(pop.sync.run())
    t.equal(f.code, 'CLA_ERR_SYNC_VERIFY')
    t.equal(f.details.path, target.path)
    t.equal(getMeta(pop.db, K_CURSOR), encodeCursor(infos[11]!), 'cursor right before the bad blob')
    t.equal(indexOf(pop.store).length, 12, 'the good blobs before it are sealed')
    t.notOk(pop.store.bySeq(target.seq), 'the bad blob is not indexed')
    t.equal(pop.sync.status().last_run?.ok, false)
    const refusals = listEvents(pop.db, {}).filter((e) => e.reason === 'CLA_ERR_SYNC_VERIFY')
    t.equal(refusals.length, 1, 'audited')
    // a second run still refuses (nothing unverified slips in)
    t.equal((await failure(pop.sync.run())).code, 'CLA_ERR_SYNC_VERIFY')
    // the core's file is put right: the next run completes
    writeFileSync(targetFile, original)
    const r = await pop.sync.run()
    t.equal(r.sealed, 8)
    t.same(indexOf(pop.store), indexOf(core.store))
    t.ok((await pop.store.verify()).ok)
  },
)

t.test(
  'a listed file missing on the core: partial transfer, cursor stays, resumes later',
  async (t) => {
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    const infos = await core.addBlobs(10)
    const target = infos[6]!
    const file = join(core.root, target.path)
    const aside = join(dir, 'aside.cla')
    unseal(join(file, '..'))
    renameSync(file, aside)
    const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-m', { pageSize: 100 })
    const f = await failure(pop.sync.run())
    t.equal(f.code, 'CLA_ERR_SYNC_PARTIAL')
    t.equal(f.details.rsync_exit, 23, 'rsync exit 23 (partial transfer due to error)')
    t.equal(
      getMeta(pop.db, K_CURSOR),
      encodeCursor(infos[5]!),
      'cursor right before the missing blob',
    )
    t.equal(indexOf(pop.store).length, 6)
    copyFileSync(aside, file)
    const r = await pop.sync.run()
    t.equal(r.sealed, 4, 'only the rest is fetched')
    t.same(indexOf(pop.store), indexOf(core.store))
  },
)

t.test(
  'pages staged ahead: a bad file in a later page stops there; nothing after it is kept',
  async (t) => {
    const dir = tempDir(t)
    const core = await startCore(t, join(dir, 'core'))
    const infos = await core.addBlobs(23)
    // pages of 4: the damaged blob is the 2nd of page 4. Its failure shows only when its
    // verification is awaited, so pages 5 and 6 are fetched and verified ahead meanwhile.
    const target = infos[13]!
    const file = join(core.root, target.path)
    const original = damage(file)
    const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-a', { pageSize: 4 })
    const f = await failure(pop.sync.run())
    t.equal(f.code, 'CLA_ERR_SYNC_VERIFY')
    t.equal(f.details.path, target.path)
    t.equal(getMeta(pop.db, K_CURSOR), encodeCursor(infos[12]!), 'cursor right before it')
    t.equal(indexOf(pop.store).length, 13, 'everything before it sealed and indexed')
    const visible = execFileSync('find', [pop.store.root, '-name', '*.cla'], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
    t.equal(visible.length, 13, 'nothing staged ahead became visible in the store')
    writeFileSync(file, original)
    const r = await pop.sync.run()
    t.equal(r.sealed, 10, 'the rest, each fetched once')
    t.same(indexOf(pop.store), indexOf(core.store))
    t.ok((await pop.store.verify()).ok)
  },
)

t.test('a POP pointed at another store says so and mixes nothing', async (t) => {
  const dir = tempDir(t)
  const coreA = await startCore(t, join(dir, 'core-a'))
  const coreB = await startCore(t, join(dir, 'core-b'))
  await coreA.addBlobs(6)
  await coreB.addBlobs(4)
  let pop = await openTestPop(t, coreA, join(dir, 'pop'), 'pop-x')
  await pop.sync.run()
  await pop.close()
  pop = await openTestPop(t, coreB, join(dir, 'pop'), 'pop-x', { initTrustKeys: undefined })
  const f = await failure(pop.sync.run())
  // the alarm was raised, the cursor re-baselined, then B's first page comes with a
  // checkpoint signed by a key this POP does not trust: refused before any file is fetched
  // (were the key trusted, B's first blob, reusing a sequence number this POP holds from A,
  // would be a conflict: test/lib/pop-sync/pull.test.ts): no mixing
  t.equal(f.code, 'CLA_ERR_SYNC_CHECKPOINT')
  const alarms = listEvents(pop.db, {})
    .filter((e) => e.kind === 'sync.alarm')
    .map((e) => e.reason)
  t.ok(alarms.includes('CLA_ERR_SYNC_STORE_MISMATCH'), 'store mismatch audited')
  t.same(indexOf(pop.store), indexOf(coreA.store), 'still exactly store A')
  t.ok((await pop.store.verify()).ok)

  // an empty POP that trusts A's key but is pointed at B: B's log is not signed by a key
  // it trusts
  const fresh = await openTestPop(t, coreB, join(dir, 'pop-2'), 'pop-y', {
    initTrustKeys: [coreA.store.publicKey!],
  })
  const g = await failure(fresh.sync.run())
  t.equal(g.code, 'CLA_ERR_SYNC_CHECKPOINT')
  t.equal(g.details.key_id, coreB.store.keyId, "B's key, named")
  t.equal(indexOf(fresh.store).length, 0, 'nothing from the untrusted store is sealed')
})

t.test(
  'a core restored from a backup: the POP notices its cursor is ahead and re-baselines',
  async (t) => {
    const dir = tempDir(t)
    const coreDir = join(dir, 'core')
    let core = await startCore(t, coreDir)
    await core.addBlobs(10)
    await core.close()
    // the backup: a copy of the core's data folder as it is now (10 blobs)
    const backup = join(dir, 'core-backup')
    cpSync(coreDir, backup, { recursive: true })
    core = await startCore(t, coreDir)
    await core.addBlobs(5)
    let pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-b')
    await pop.sync.run()
    t.equal(indexOf(pop.store).length, 15)
    await pop.close()
    await core.close()

    const restored = await startCore(t, backup)
    pop = await openTestPop(t, restored, join(dir, 'pop'), 'pop-b')
    const r = await pop.sync.run()
    t.same(
      r.alarms.map((a) => a.code),
      ['CLA_ERR_SYNC_CURSOR_AHEAD'],
      'said so',
    )
    t.equal(r.sealed, 0, 'nothing fetched: everything the restored core lists is held here')
    t.equal(r.already, 10, 're-baselined by checking every listed blob against what it holds')
    t.same(
      decodeCursor(getMeta(pop.db, K_CURSOR)),
      decodeCursor(restored.store.changesAfter(null, 100).next),
      'cursor at the restored head',
    )
    t.ok(
      listEvents(pop.db, {}).some((e) => e.reason === 'CLA_ERR_SYNC_CURSOR_AHEAD'),
      'audited',
    )
    t.match(
      pop.sync.status().last_run?.error?.code,
      'CLA_ERR_SYNC_CURSOR_AHEAD',
      'visible in health',
    )
    // the restored core reuses sequence numbers the POP holds with other content: refused loudly
    await restored.addBlobs(1)
    const f = await failure(pop.sync.run())
    t.equal(f.code, 'CLA_ERR_SYNC_CONFLICT')
    t.equal(indexOf(pop.store).length, 15, 'nothing mixed')
  },
)
