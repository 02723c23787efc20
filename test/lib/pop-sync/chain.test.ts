// The replication log against a feed that lies (lib/pop-sync/pull.ts checkChain): a real
// core store served over HTTP, a real POP store, real rsync; a FeedClient in between
// tampers with the core's genuine pages. Every lie is refused before anything of its page
// is sealed, audited as sync.alarm, and the cursor stays where it was; the honest feed then
// carries on. Also: a forked core (a copy of the core's data folder from before, which then
// wrote other blobs under the same store id and generation), a replayed old checkpoint, an
// untrusted or forged checkpoint, and a full POP that lost its index adopting its files
// without downloading them again.
import { cpSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { FeedPage } from '../../../lib/core-sync/feed.js'
import { pullOnce } from '../../../lib/pop-sync/pull.js'
import { PopCursor } from '../../../lib/pop-sync/pop-cursor.js'
import type { FeedClient } from '../../../lib/pop-sync/transport.js'
import { ManualClock } from '../../../lib/clock.js'
import { BlobStore } from '../../../lib/store/index.js'
import {
  failure,
  feedOf,
  indexOf,
  popStore,
  pullOptions,
  startCore,
  tempDir,
  unseal,
  type TestCore,
} from '../../fixtures/sync.js'

/** The core's genuine pages, each passed through `lie` (a copy: the core is not touched). */
function lyingFeed(core: TestCore, lie: (p: FeedPage) => FeedPage): FeedClient {
  const honest = feedOf(core)
  return {
    report: (s) => honest.report(s),
    page: async (c, n) => lie(structuredClone(await honest.page(c, n))),
  }
}

type Teardown = { teardown: (fn: () => void | Promise<void>) => void }

/** A core with 12 blobs over 6 P0s (two versions each), and a POP that pulled them all. */
async function setup(t: Teardown) {
  const dir = tempDir(t)
  const clock = new ManualClock()
  const core = await startCore(t, join(dir, 'core'), { checkpoints: { clock } })
  const p0s = ['a1', 'b2', 'c3', 'd4', 'e5', 'f6'].map((x) => x.repeat(16))
  await core.addBlobs(12, p0s)
  const pop = await popStore(t, join(dir, 'pop'), core)
  const first = await pullOnce(pullOptions(core, pop))
  return { core, pop, first, p0s, clock }
}

type Lie = { name: string; lie: (p: FeedPage) => FeedPage }

const lies: Lie[] = [
  {
    name: 'an entry skipped',
    lie: (p) => ({ ...p, items: p.items.filter((_, i) => i !== 1) }),
  },
  {
    name: 'two entries reordered',
    lie: (p) => {
      const items = [...p.items]
      ;[items[1], items[2]] = [items[2]!, items[1]!]
      return { ...p, items }
    },
  },
  {
    name: 'an entry inserted (an older blob listed again)',
    lie: (p) => {
      const items = [...p.items]
      items.splice(2, 0, { ...items[0]! })
      return { ...p, items }
    },
  },
  {
    name: "an entry's file replaced (its file sha256 altered)",
    lie: (p) => ({
      ...p,
      items: p.items.map((it, i) => (i === 2 ? { ...it, file_sha256: 'ab'.repeat(32) } : it)),
    }),
  },
  {
    name: 'the newest version withheld (an older version passed off as the newest)',
    lie: (p) => ({ ...p, items: p.items.slice(0, -1), more: false }),
  },
]

for (const { name, lie } of lies) {
  t.test(`a feed with ${name} is refused, audited, and nothing of the page sealed`, async (t) => {
    const { core, pop, first, p0s } = await setup(t)
    t.equal(first.sealed, 12, 'the honest feed first: every blob')
    const more = await core.addBlobs(5, p0s) // a third version of five P0s
    const o = pullOptions(core, pop, { feed: lyingFeed(core, lie), pageSize: 5 })
    const before = new PopCursor(pop.db).token()
    const f = await failure(pullOnce(o))
    t.equal(f.code, 'CLA_ERR_SYNC_CHAIN', f.message)
    t.equal(new PopCursor(pop.db).token(), before, 'the cursor did not move')
    t.equal(pop.index.count(), 12, 'nothing of the lying page sealed')
    t.same(
      o.audits.map((a) => [a.kind, a.outcome, a.reason]),
      [['sync.alarm', 'alarm', 'CLA_ERR_SYNC_CHAIN']],
      'audited as an alarm',
    )
    const honest = await pullOnce(pullOptions(core, pop))
    t.equal(honest.sealed, more.length, 'the honest feed carries on from the same place')
    t.same(indexOf(pop), indexOf(core.store))
  })
}

t.test(
  'the checkpoint itself: forged, of another generation, or unsigned by a trusted key',
  async (t) => {
    const { core, pop } = await setup(t)
    await core.addBlobs(3)
    const forged = (p: FeedPage): FeedPage => ({
      ...p,
      checkpoint: { ...p.checkpoint, chain: 'cd'.repeat(32) },
    })
    const otherGen = (p: FeedPage): FeedPage => ({
      ...p,
      checkpoint: { ...p.checkpoint, generation: p.generation + 1 },
    })
    const bareSig = (p: FeedPage): FeedPage => ({
      ...p,
      checkpoint: { ...p.checkpoint, signature: 'x' },
    })
    for (const [what, lie, code] of [
      ['a checkpoint whose chain was altered', forged, 'CLA_ERR_SYNC_CHECKPOINT'],
      ['a checkpoint of another generation', otherGen, 'CLA_ERR_SYNC_CHECKPOINT'],
      ['a malformed signature', bareSig, 'CLA_ERR_SYNC_CHECKPOINT'],
    ] as const) {
      const o = pullOptions(core, pop, { feed: lyingFeed(core, lie) })
      const f = await failure(pullOnce(o))
      t.equal(f.code, code, what)
      t.equal(pop.index.count(), 12, `${what}: nothing sealed`)
      t.equal(o.audits[0]?.reason, code, `${what}: audited`)
    }
  },
)

t.test(
  'a replayed old page: refused; an old checkpoint never makes the POP look fresher',
  async (t) => {
    const { core, pop, clock } = await setup(t)
    const cursor = new PopCursor(pop.db)
    const first = cursor.checkpoint()!
    t.match(
      first,
      { seq: core.store.index.head()!.seq, store_id: core.store.storeId },
      'a caught-up POP keeps the checkpoint of its cursor',
    )
    const stale = await feedOf(core).page(cursor.token(), 5) // what an attacker records now
    clock.advance(60_000)
    t.equal((await pullOnce(pullOptions(core, pop))).sealed, 0)
    const held = cursor.checkpoint()!
    t.equal(
      held.time,
      first.time + 60_000_000,
      'an idle core re-signs its head: the POP is fresher',
    )
    // the core moves on; the attacker replays the empty page of the POP's own position with
    // its older checkpoint (a freeze): "nothing new" is all it can say, the freshness stays
    await core.addBlobs(2)
    await pullOnce(
      pullOptions(core, pop, { feed: { report: async () => {}, page: async () => stale } }),
    )
    t.same(cursor.checkpoint(), held, 'freshness not moved back by a replay')
    // a checkpoint for an earlier position: refused
    const earlier = await feedOf(core).page(null, 3)
    const replay = pullOptions(core, pop, {
      feed: { report: async () => {}, page: async () => ({ ...earlier, items: [] }) },
    })
    const f = await failure(pullOnce(replay))
    t.equal(f.code, 'CLA_ERR_SYNC_CHAIN', 'an old checkpoint does not cover the cursor')
    clock.advance(60_000)
    const fresh = await pullOnce(pullOptions(core, pop))
    t.equal(fresh.sealed, 2)
    t.ok(cursor.checkpoint()!.time > held.time, 'the honest feed makes it fresher')
  },
)

t.test(
  'a forked core (an older copy that wrote other blobs, same store id) is detected',
  async (t) => {
    const dir = tempDir(t)
    const original = await startCore(t, join(dir, 'core'))
    await original.addBlobs(4)
    await original.close()
    unseal(join(dir, 'core'))
    cpSync(join(dir, 'core'), join(dir, 'fork'), { recursive: true }) // a backup taken now
    const core = await startCore(t, join(dir, 'core'))
    await core.addBlobs(4)
    const pop = await popStore(t, join(dir, 'pop'), core)
    t.equal((await pullOnce(pullOptions(core, pop))).sealed, 8)
    await core.close()
    // the backup is brought back under the same identity and writes other blobs
    const fork = await startCore(t, join(dir, 'fork'))
    t.equal(fork.store.storeId, core.store.storeId)
    t.equal(fork.store.generation, core.store.generation)
    await fork.addBlobs(6)
    const o = pullOptions(fork, pop)
    const f = await failure(pullOnce(o))
    t.equal(f.code, 'CLA_ERR_SYNC_CHAIN', 'its log does not extend the one this POP verified')
    t.equal(pop.index.count(), 8, 'nothing of the fork sealed')
    t.equal(o.audits.at(-1)?.reason, 'CLA_ERR_SYNC_CHAIN')
  },
)

t.test('a full POP that lost its index adopts its files without a download', async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  await core.addBlobs(30)
  const popDir = join(dir, 'pop')
  const pop = await popStore(t, popDir, core)
  t.equal((await pullOnce(pullOptions(core, pop))).sealed, 30)
  const cursor = new PopCursor(pop.db).token()
  await pop.close()
  for (const f of ['meta.db', 'meta.db-wal', 'meta.db-shm'])
    rmSync(join(popDir, f), { force: true })
  const again = await BlobStore.open({ dataDir: popDir, protection: 'best-effort' })
  t.teardown(() => again.close())
  t.equal(again.healed?.adopted, true, 'the fresh index adopted the files')
  t.equal(again.index.count(), 30)
  // rsync pointed nowhere: a download attempt would fail the run
  const o = pullOptions(core, again, { rsync: { source: join(dir, 'nowhere') } })
  const res = await pullOnce(o)
  t.equal(res.sealed, 0, 'nothing fetched')
  t.equal(res.already, 30, 'every listed blob found held and matching the chain')
  t.equal(res.cursor, cursor, 'the cursor back where it was')
  t.same(indexOf(again), indexOf(core.store))
  t.ok((await again.verify()).chain.ok, 'its chain verifies')
})

t.test('store verify recomputes the chain; a stored value that differs is named', async (t) => {
  const { pop, core } = await setup(t)
  const ok = await pop.verify()
  t.equal(ok.chain.ok, true)
  t.equal(ok.chain.checked, 12)
  t.equal(ok.chain.head, core.store.index.chainAt(core.store.index.head()!.seq))
  const third = pop.db
    .prepare('SELECT seq, path FROM blobs ORDER BY created_at, seq LIMIT 1 OFFSET 2')
    .get() as { seq: number; path: string }
  pop.db.prepare('UPDATE blobs SET chain = ? WHERE seq = ?').run('00'.repeat(32), third.seq)
  const bad = await pop.verify()
  t.equal(bad.ok, false)
  t.same(bad.chain.firstBad, third)
})
