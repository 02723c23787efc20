// The POP's wake loop (lib/pop-sync/wake.ts, lib/pop-sync/pull-loop.ts) against a real
// core over HTTP, a real POP store and rsync: a commit on the core is pulled by a wake run
// (no tree check); the loop survives a core restart; a POP that fell behind catches up on
// its first wait; the hourly run still fires, with its check; a pull that moves nothing
// backs off instead of spinning.
import t from 'tap'
import { join } from 'node:path'
import { PullLoop } from '../../../lib/pop-sync/pull-loop.js'
import type { RunReason } from '../../../lib/pop-sync/scheduler.js'
import type { RunOutcome } from '../../../lib/pop-sync/agent.js'
import { openTestPop, randomP0, startCore, tempDir, type TestCore } from '../../fixtures/sync.js'
import { FakeClock } from '../../fixtures/fake-clock.js'
import type { Pop } from '../../../lib/pop.js'

/** Resolves when `cond` holds; fails the test after `ms` (a deadline against a hang, not a speed check). */
async function until(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

function held(pop: Pop, seq: number): boolean {
  return pop.store.bySeq(seq) !== undefined
}

/** A pull loop over `pop` whose runs are recorded (reason, check mode). */
function loopOf(
  t: { teardown: (fn: () => unknown) => void },
  pop: Pop,
  extra: Partial<ConstructorParameters<typeof PullLoop>[0]> = {},
) {
  const runs: Array<{ reason: RunReason; ok: boolean; mode?: string }> = []
  const sync = {
    opts: pop.sync.opts,
    cursor: () => pop.sync.cursor(),
    run: async (o: Parameters<Pop['sync']['run']>[0]) => {
      const r: RunOutcome = await pop.sync.run(o)
      lastMode = r.checked.mode
      return r
    },
  }
  let lastMode: string | undefined
  const loop = new PullLoop({
    sync,
    waitS: 20,
    wake: { minGapMs: 0, backoffBaseMs: 50, backoffMaxMs: 200 },
    onRun: (r) => runs.push({ reason: r.reason, ok: r.ok, mode: lastMode }),
    ...extra,
  })
  t.teardown(() => loop.stop())
  return { loop, runs }
}

t.test('a commit on the core is pulled by a wake run, without the tree check', async (t) => {
  const core = await startCore(t, join(tempDir(t), 'core'))
  const pop = await openTestPop(t, core, join(tempDir(t), 'pop'), 'pop-wake')
  await core.addBlobs(3)
  const { loop, runs } = loopOf(t, pop)
  loop.start()
  await until(() => runs.length >= 1, 'the run at start')
  t.equal(runs[0]!.reason, 'regular', 'the run at start is a regular one')
  t.not(runs[0]!.mode, 'none', 'with its check (a full verify: the first ever)')
  const [b] = await core.addBlobs(1, [randomP0()])
  await until(() => held(pop, b!.seq), 'the new blob on the POP')
  await until(() => runs.some((r) => r.reason === 'wake'), 'the wake run recorded')
  const wake = runs.find((r) => r.reason === 'wake')
  t.ok(wake?.ok, 'pulled by a wake run')
  t.equal(wake!.mode, 'none', 'a wake run does not check the tree')
  t.equal(pop.store.index.count(), 4)
})

t.test('a burst of commits: each wake pull takes everything committed so far', async (t) => {
  const core = await startCore(t, join(tempDir(t), 'core'))
  const pop = await openTestPop(t, core, join(tempDir(t), 'pop'), 'pop-burst')
  const { loop } = loopOf(t, pop, { wake: { minGapMs: 300 } })
  loop.start()
  await until(() => loop.wake!.stats.waits >= 0 && !loop.scheduler.isRunning, 'first run over')
  const infos: Awaited<ReturnType<TestCore['addBlobs']>> = []
  for (let i = 0; i < 10; i++) infos.push(...(await core.addBlobs(5)))
  await until(() => held(pop, infos[infos.length - 1]!.seq), 'the whole burst on the POP')
  t.equal(pop.store.index.count(), 50)
  t.ok(
    loop.wake!.stats.wakes < 10,
    `fewer wake pulls (${loop.wake!.stats.wakes}) than commits (10): a pull takes what came meanwhile`,
  )
})

t.test('the loop survives a core restart and pulls from the new process', async (t) => {
  const dir = join(tempDir(t), 'core')
  let core: TestCore = await startCore(t, dir)
  const port = Number(new URL(core.url).port)
  const pop = await openTestPop(t, core, join(tempDir(t), 'pop'), 'pop-restart')
  const { loop } = loopOf(t, pop)
  loop.start()
  await until(() => !loop.scheduler.isRunning && loop.scheduler.nextAt !== null, 'first run over')
  await core.close() // the long-poll in flight ends; new ones fail (connection refused)
  await until(() => loop.wake!.stats.failures >= 1, 'a failed wait')
  core = await startCore(t, dir, { port })
  const [b] = await core.addBlobs(1)
  await until(() => held(pop, b!.seq), 'the blob written after the restart')
  await until(() => loop.wake!.stats.failing === 0, 'the loop back to normal')
  t.ok(loop.wake!.stats.failures >= 1, 'after failed waits while the core was down')
})

t.test('a POP that fell behind catches up on its first wait', async (t) => {
  const core = await startCore(t, join(tempDir(t), 'core'))
  const pop = await openTestPop(t, core, join(tempDir(t), 'pop'), 'pop-behind')
  await core.addBlobs(5)
  await pop.sync.run()
  // the POP is down while the core takes 120 more (three pages of 50)
  const more = await core.addBlobs(120)
  const { loop, runs } = loopOf(t, pop, { schedule: { runAtStart: false } })
  loop.start()
  await until(() => held(pop, more[more.length - 1]!.seq), 'every blob on the POP')
  await until(() => runs.length >= 1 && !loop.scheduler.isRunning, 'the run recorded')
  t.equal(pop.store.index.count(), 125)
  t.same(
    runs.map((r) => r.reason),
    ['wake'],
    'one wake pull took all three pages (no regular run was due)',
  )
})

t.test('the hourly run still fires beside the long-poll, with its check', async (t) => {
  const core = await startCore(t, join(tempDir(t), 'core'))
  const pop = await openTestPop(t, core, join(tempDir(t), 'pop'), 'pop-hourly')
  const clock = new FakeClock(Date.now())
  const { loop, runs } = loopOf(t, pop, {
    clock,
    schedule: { runAtStart: false, jitterMs: 0 },
    wake: { minGapMs: 0 },
  })
  loop.start()
  const [b] = await core.addBlobs(1)
  await until(() => held(pop, b!.seq), 'the blob, by a wake run')
  await until(() => runs.length === 1, 'the wake run recorded')
  t.same(
    runs.map((r) => r.reason),
    ['wake'],
    JSON.stringify(runs),
  )
  const due = loop.scheduler.nextAt!
  t.ok(due > clock.now(), 'the regular run is armed for its slot')
  await clock.fireNext() // the hour comes
  await until(() => runs.length === 2, 'the regular run')
  t.equal(runs[1]!.reason, 'regular')
  t.equal(
    runs[1]!.mode,
    'full',
    'the regular run checks the tree (the first check ever: a full verify)',
  )
  t.ok(loop.wake!.running, 'the long-poll goes on')
})

t.test('a wake pull that moves nothing backs off instead of asking again at once', async (t) => {
  const core = await startCore(t, join(tempDir(t), 'core'))
  const other = await startCore(t, join(tempDir(t), 'other'))
  const pop = await openTestPop(t, core, join(tempDir(t), 'pop'), 'pop-stuck')
  await core.addBlobs(1)
  await pop.sync.run()
  // the POP is pointed at another core's feed: its pages are refused (identity), the
  // cursor never moves, and that core always has "new" blobs for this cursor
  other.registerPop('pop-stuck')
  await other.addBlobs(2)
  const clock = new FakeClock(Date.now())
  const { plainHttpFeedClient } = await import('../../../lib/pop-sync/transport.js')
  const feed = plainHttpFeedClient(other.url, { 'x-pop-id': 'pop-stuck' })
  const sync = {
    opts: { ...pop.sync.opts, feed },
    cursor: () => pop.sync.cursor(),
    run: () => pop.sync.run(),
  }
  const loop = new PullLoop({
    sync: sync as never,
    waitS: 5,
    clock,
    // the regular slot far away (10 days): only the wake loop's timers matter here
    schedule: { runAtStart: false, intervalMs: 864_000_000 },
    wake: { minGapMs: 0, backoffBaseMs: 10_000, backoffMaxMs: 60_000 },
  })
  t.teardown(() => loop.stop())
  loop.start()
  const stats = loop.wake!.stats
  await until(() => stats.retryAt !== null, 'the first stuck pull')
  t.equal(stats.wakes, 1, 'one wake pull')
  t.equal(stats.retryAt, clock.now() + 10_000, 'then a backoff of the base delay')
  t.equal(clock.nextTimer(), stats.retryAt, 'the loop sleeps on that timer')
  await clock.fireNext() // the backoff ends: the core says "new" again, the pull moves nothing
  await until(() => stats.failing === 2 && stats.retryAt !== null, 'the second stuck pull')
  t.equal(stats.wakes, 2, 'one more wake pull only after the backoff')
  t.equal(stats.retryAt, clock.now() + 20_000, 'and the backoff doubles')
})

t.test(
  'a core that does not hold waits (older than the long-poll) is not asked in a loop',
  async (t) => {
    const core = await startCore(t, join(tempDir(t), 'core'))
    const pop = await openTestPop(t, core, join(tempDir(t), 'pop'), 'pop-old-core')
    // the feed route as it was before the long-poll: `wait` is ignored, the page comes at once
    const { default: Fastify } = await import('fastify')
    const { feedPage } = await import('../../../lib/core-sync/feed.js')
    const { Checkpointer } = await import('../../../lib/core-sync/checkpointer.js')
    const old = Fastify()
    const checkpoints = new Checkpointer(core.store)
    let asked = 0
    old.get('/pop/v1/feed', async (req) => {
      asked++
      const q = req.query as Record<string, string | undefined>
      return feedPage(
        {
          db: core.store.db,
          storeId: core.store.storeId,
          generation: core.store.generation,
          checkpoints,
        },
        { cursor: q.cursor ?? null, limit: Number(q.limit) },
      )
    })
    const url = await old.listen({ host: '127.0.0.1', port: 0 })
    t.teardown(() => old.close())
    const { plainHttpFeedClient } = await import('../../../lib/pop-sync/transport.js')
    const clock = new FakeClock(Date.now())
    const loop = new PullLoop({
      sync: {
        opts: { ...pop.sync.opts, feed: plainHttpFeedClient(url) },
        cursor: () => pop.sync.cursor(),
        run: () => pop.sync.run(),
      } as never,
      waitS: 30,
      clock,
      schedule: { runAtStart: false, intervalMs: 864_000_000 },
    })
    t.teardown(() => loop.stop())
    const started = clock.now()
    loop.start()
    const stats = loop.wake!.stats
    await until(() => stats.early === 1, 'the first early answer')
    t.equal(asked, 1, 'asked once')
    t.equal(
      clock.nextTimer(),
      started + 30_000,
      'then the rest of the wait passes before asking again',
    )
    await clock.fireNext()
    await until(() => stats.early === 2, 'the second early answer')
    t.equal(asked, 2, 'one request per wait period, not a loop')
  },
)
