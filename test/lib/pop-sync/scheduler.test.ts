import t from 'tap'
import {
  SyncScheduler,
  backoffDelay,
  nextRegularRun,
  slotOf,
  slotOffsetMs,
} from '../../../lib/pop-sync/scheduler.js'
import { claError } from '../../../lib/errors.js'
import { FakeClock } from '../../fixtures/fake-clock.js'

const HOUR = 3_600_000
const SLOT = 180_000

t.test('slots: 20 three-minute slots an hour, stable per id, spread across ids', async (t) => {
  t.equal(slotOf('pop-ams-1'), slotOf('pop-ams-1'), 'stable')
  const seen = new Set<number>()
  for (let i = 0; i < 200; i++) {
    const s = slotOf(`pop-${i}`)
    t.ok(s >= 0 && s < 20, 'in range')
    seen.add(s)
  }
  t.ok(seen.size >= 18, `200 ids use ${seen.size} of 20 slots`)
  t.equal(slotOffsetMs('pop-ams-1') % SLOT, 0, 'offset is a slot start')
  t.ok(slotOffsetMs('pop-ams-1') < HOUR)
  t.equal(slotOf('x', { intervalMs: 600_000, slotMs: 60_000 }) < 10, true, 'custom interval/slot')
})

t.test('next regular run: the slot start of the next hour, plus bounded jitter', async (t) => {
  const id = 'pop-fra-2'
  const off = slotOffsetMs(id)
  const base = Date.UTC(2026, 0, 1, 10, 0, 0)
  // just before the slot today: runs at the slot today
  t.equal(
    nextRegularRun(base + off - 1, id, {}, () => 0),
    base + off,
  )
  // at the slot: strictly after → next hour
  t.equal(
    nextRegularRun(base + off, id, {}, () => 0),
    base + off + HOUR,
  )
  // jitter in [0, jitterMs)
  const j = nextRegularRun(base + off - 1, id, { jitterMs: 30_000 }, () => 0.999)
  t.ok(j >= base + off && j < base + off + 30_000, 'jitter bounded')
  // two ids in different slots never run at the same instant without jitter
  const ids = ['a', 'b', 'c', 'd'].filter(
    (x, i, arr) => arr.findIndex((y) => slotOf(y) === slotOf(x)) === i,
  )
  const times = new Set(ids.map((x) => nextRegularRun(base, x, {}, () => 0)))
  t.equal(times.size, ids.length, 'distinct slots → distinct times')
})

t.test('backoff doubles per failure and is capped', async (t) => {
  const mid = () => 0.5 // no jitter effect (factor 1.0)
  t.equal(backoffDelay(1, {}, mid), 30_000)
  t.equal(backoffDelay(2, {}, mid), 60_000)
  t.equal(backoffDelay(3, {}, mid), 120_000)
  t.equal(backoffDelay(50, {}, mid), HOUR, 'capped at the interval')
  t.equal(backoffDelay(10, { backoffMaxMs: 600_000 }, mid), 600_000, 'custom cap')
  const lo = backoffDelay(2, {}, () => 0)
  const hi = backoffDelay(2, {}, () => 0.9999)
  t.ok(lo >= 54_000 && hi <= 66_000 && lo < hi, '±10% jitter')
})

t.test(
  'scheduler: runs at start, then in its slot; backs off after failures; resets on success',
  async (t) => {
    const start = Date.UTC(2026, 0, 1, 10, 0, 0) + 7
    const clock = new FakeClock(start)
    const outcomes: Array<'ok' | 'fail'> = ['ok', 'fail', 'fail', 'fail', 'ok', 'ok']
    const runs: number[] = []
    const s = new SyncScheduler({
      popId: 'pop-1',
      clock,
      rand: () => 0.5,
      jitterMs: 0,
      run: async () => {
        runs.push(clock.now())
        const o = outcomes.shift()
        if (o === 'fail') throw new Error('rsync exit 10')
      },
    })
    s.start()
    t.equal(clock.pending, 1)
    const off = slotOffsetMs('pop-1')
    await clock.fireNext() // at start: ok
    t.equal(runs[0], start)
    t.equal(s.failures, 0)
    t.equal(s.nextAt, nextRegularRun(start, 'pop-1', { jitterMs: 0 }))
    t.equal((s.nextAt! - off) % HOUR, 0, 'next run sits on the slot')
    await clock.fireNext() // slot: fail
    const failAt = runs[1]!
    t.equal(s.failures, 1)
    t.equal(s.nextAt, failAt + 30_000, 'first retry after 30 s')
    await clock.fireNext() // fail again
    t.equal(s.failures, 2)
    t.equal(s.nextAt, runs[2]! + 60_000)
    await clock.fireNext() // fail a third time
    t.equal(s.nextAt, runs[3]! + 120_000)
    await clock.fireNext() // ok → back to the slot
    t.equal(s.failures, 0)
    t.equal((s.nextAt! - off) % HOUR, 0)
    await s.stop()
    t.equal(clock.pending, 0, 'stop clears the timer')
    t.equal(s.nextAt, null)
  },
)

t.test('manual run joins a run in flight; stop aborts it', async (t) => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1))
  let calls = 0
  let sawAbort = false
  let release!: () => void
  const s = new SyncScheduler({
    popId: 'pop-2',
    clock,
    runAtStart: false,
    run: (signal) =>
      new Promise<void>((resolve, reject) => {
        calls++
        release = resolve
        signal.addEventListener('abort', () => {
          sawAbort = true
          reject(new Error('aborted'))
        })
      }),
  })
  s.start()
  t.ok(s.nextAt! > clock.now(), 'runAtStart false: waits for its slot')
  const a = s.runNow()
  const b = s.runNow()
  t.equal(calls, 1, 'one run in flight')
  t.ok(s.isRunning)
  release()
  await Promise.all([a, b])
  t.equal(s.failures, 0)
  const c = s.runNow()
  t.equal(calls, 2)
  await s.stop()
  await c
  t.ok(sawAbort, 'stop aborted the run in flight')
  t.equal(clock.pending, 0, 'no timer re-armed after stop')
})

t.test('a run stopped by stop() (CLA_ERR_SYNC_ABORTED) is not counted as a failure', async (t) => {
  const clock = new FakeClock(Date.UTC(2026, 0, 1))
  const seen: Array<{ ok: boolean; failures: number }> = []
  const s = new SyncScheduler({
    popId: 'pop-3',
    clock,
    runAtStart: false,
    run: (signal) =>
      new Promise<void>((_resolve, reject) => {
        signal.addEventListener('abort', () =>
          reject(claError('CLA_ERR_SYNC_ABORTED', 'pull stopped by shutdown')),
        )
      }),
    onRun: (r) => seen.push({ ok: r.ok, failures: r.failures }),
  })
  s.start()
  const run = s.runNow()
  await s.stop()
  await run
  t.equal(s.failures, 0, 'no failure counted')
  t.same(seen, [{ ok: false, failures: 0 }])
})

t.test(
  'a regular or manual run that comes during a wake run runs after it, not joined to it',
  async (t) => {
    const clock = new FakeClock(Date.UTC(2026, 0, 1))
    const reasons: string[] = []
    let release!: () => void
    const s = new SyncScheduler({
      popId: 'pop-4',
      clock,
      runAtStart: false,
      jitterMs: 0,
      run: (_signal, reason) => {
        reasons.push(reason)
        // the wake run is held until the test lets it go; the others end at once
        return reason === 'wake' ? new Promise<void>((r) => (release = r)) : Promise.resolve()
      },
    })
    s.start()
    const wake = s.wake()
    const again = s.wake()
    t.same(reasons, ['wake'], 'a second wake joins the wake run in flight')
    await clock.fireNext() // the hour comes while the wake run is in flight
    const manual = s.runNow()
    t.same(reasons, ['wake'], 'nothing else starts while it runs')
    release()
    await Promise.all([wake, again, manual])
    t.same(
      reasons,
      ['wake', 'regular'],
      'the regular run (with its tree check) ran after the wake run; the manual one joined it',
    )
    t.ok(s.nextAt! > clock.now(), 'and the next slot is armed')
    await s.stop()
  },
)
