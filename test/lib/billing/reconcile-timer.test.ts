// The reconcile timer `core serve` starts (Billing.startWorkers, called by scripts/cli/core.ts
// with --reconcile-interval-ms, default RECONCILE_INTERVAL_MS): on the instance's clock, a
// pass an hour after the start and an hour after each pass ends, none before; none once
// stopped. Time is moved by a manual clock; nothing waits. Fails when the timer is not
// started (no pass after the hour) or not re-armed (no second pass).
import t from 'tap'
import { billingRig, seed } from '../../fixtures/billing.js'
import {
  Billing,
  RECONCILE_INTERVAL_MS,
  type ReconcileReport,
} from '../../../lib/billing/billing.js'
import { ManualClock } from '../../../lib/clock.js'

/** A manual clock that counts the timers armed on it and those that fired. */
class CountingClock extends ManualClock {
  armed = 0
  fired = 0
  override setTimeout(fn: () => void, ms: number): unknown {
    this.armed++
    return super.setTimeout(() => {
      this.fired++
      fn()
    }, ms)
  }
}

t.test('core serve reconciles every hour, on the clock', async (t) => {
  t.equal(RECONCILE_INTERVAL_MS, 3_600_000, 'hourly by default')
  const rig = await billingRig()
  t.teardown(rig.close)
  await seed(rig.billing)
  const clock = new CountingClock(rig.clock.now())
  const b = new Billing({ db: rig.db, paddle: rig.client, clock })
  t.teardown(() => b.stop())
  const streamReads = () =>
    rig.fake.state.requests.filter((q) => q.path.startsWith('/events')).length

  let report: (r: ReconcileReport) => void = () => {}
  const nextPass = () => new Promise<ReconcileReport>((resolve) => (report = resolve))
  const fired = () => clock.fired
  const errors: unknown[] = []
  b.startWorkers({ onReconcileReport: (r) => report(r), onError: (err) => errors.push(err) })
  t.equal(clock.armed, 1, 'the reconcile timer is armed on the clock')

  clock.advance(RECONCILE_INTERVAL_MS - 1)
  t.equal(clock.fired, 0, 'no pass before the hour')
  let pass = nextPass()
  clock.advance(1)
  t.equal(clock.fired, 1, 'the pass starts at the hour')
  if (fired() !== 1) return // nothing to wait for
  const first = await pass
  t.match(first.events, { after: null }, 'a whole pass, the event stream first')
  t.equal(streamReads(), 1)
  t.equal(clock.armed, 2, 'the next one is armed when the pass ends')

  pass = nextPass()
  clock.advance(RECONCILE_INTERVAL_MS)
  t.equal(clock.fired, 2, 'an hour later, again')
  if (fired() !== 2) return
  const second = await pass
  t.match(second.events, { after: first.events!.cursor, seen: 0 }, 'from the stored cursor')
  t.same(errors, [])

  await b.stop()
  clock.advance(RECONCILE_INTERVAL_MS * 3)
  t.equal(clock.fired, 2, 'stopped: no more passes')
})

t.test('no reconcile timer without Paddle or with an interval of 0', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const clock = new CountingClock(rig.clock.now())
  const offline = new Billing({ db: rig.db, paddle: null, clock })
  offline.startReconcile()
  const never = new Billing({ db: rig.db, paddle: rig.client, clock })
  never.startWorkers({ reconcileIntervalMs: 0 })
  t.equal(clock.armed, 0)
  await offline.stop()
  await never.stop()
})
