// The POP's pull scheduler: hourly, each POP in its own 3-minute slot of the hour taken
// from a hash of its id (POPs do not all hit the core at once), plus jitter; after a
// failure, exponential backoff (capped) instead of waiting for the next hour; a manual
// run at any time, and wake runs when the core's feed long-poll says a blob came
// (lib/pop-sync/wake.ts). The hourly run stays the floor and the repair pass whatever the
// wake-ups do. Clock, timers and randomness are injected so tests never wait.
import { createHash } from 'node:crypto'
import { systemClock, type Clock } from '../clock.js'
import { isClavitorError } from '../errors.js'
import type { RunTrigger } from './agent.js'

export { systemClock, type Clock }

/** When regular runs and retries happen; every field has a default. */
export interface ScheduleOptions {
  /** Time between regular runs, ms. Default 3,600,000 (hourly). */
  intervalMs?: number
  /** Width of a POP's slot, ms. Default 180,000 (3 minutes). */
  slotMs?: number
  /** Random delay added to each regular run, ms, in [0, jitterMs). Default 30,000. */
  jitterMs?: number
  /** First retry after a failure, ms. Default 30,000; doubles per consecutive failure. */
  backoffBaseMs?: number
  /** Backoff cap, ms. Default: intervalMs. */
  backoffMaxMs?: number
}

export function scheduleDefaults(o: ScheduleOptions = {}): Required<ScheduleOptions> {
  const intervalMs = o.intervalMs ?? 3_600_000
  return {
    intervalMs,
    slotMs: o.slotMs ?? 180_000,
    jitterMs: o.jitterMs ?? 30_000,
    backoffBaseMs: o.backoffBaseMs ?? 30_000,
    backoffMaxMs: o.backoffMaxMs ?? intervalMs,
  }
}

/** The POP's slot number: sha256(id) mod (interval / slot). Default 20 slots an hour. */
export function slotOf(popId: string, o: ScheduleOptions = {}): number {
  const { intervalMs, slotMs } = scheduleDefaults(o)
  const slots = Math.max(1, Math.floor(intervalMs / slotMs))
  const h = createHash('sha256').update(popId).digest()
  return h.readUInt32BE(0) % slots
}

/** Offset of the POP's slot inside each interval, ms. */
export function slotOffsetMs(popId: string, o: ScheduleOptions = {}): number {
  return slotOf(popId, o) * scheduleDefaults(o).slotMs
}

/** The next regular run strictly after `now`: the slot start in the next interval, plus jitter. */
export function nextRegularRun(
  now: number,
  popId: string,
  o: ScheduleOptions = {},
  rand: () => number = Math.random,
): number {
  const d = scheduleDefaults(o)
  const offset = slotOffsetMs(popId, o)
  let t = Math.floor((now - offset) / d.intervalMs) * d.intervalMs + offset
  while (t <= now) t += d.intervalMs
  return t + Math.floor(rand() * d.jitterMs)
}

/** Delay before retry number `failures` (1 = first failure): base·2^(n-1), capped, ±10% jitter. */
export function backoffDelay(
  failures: number,
  o: ScheduleOptions = {},
  rand: () => number = Math.random,
): number {
  const d = scheduleDefaults(o)
  const raw = Math.min(
    d.backoffMaxMs,
    d.backoffBaseMs * 2 ** Math.max(0, Math.min(failures - 1, 30)),
  )
  return Math.max(1, Math.round(raw * (0.9 + 0.2 * rand())))
}

/** Why a run happens (the sync run's trigger, lib/pop-sync/agent.ts). */
export type RunReason = RunTrigger

/**
 * Options of a {@link SyncScheduler}: the schedule, the run it fires, and injected clock and
 * randomness.
 */
export interface SchedulerOptions extends ScheduleOptions {
  /** This POP's id: its slot in each interval comes from it. */
  popId: string
  /**
   * One pull. Rejects on failure; must honour the signal. `reason`: 'regular' (the hourly
   * slot or a backoff retry), 'manual', or 'wake' (the feed long-poll: a pull only, the
   * local tree check is left to the regular runs).
   */
  run: (signal: AbortSignal, reason: RunReason) => Promise<unknown>
  /** Time and timers. Default: the system clock. */
  clock?: Clock
  /** Randomness in [0, 1) for jitter. Default Math.random. */
  rand?: () => number
  /** Called after each run (for logs and metrics). */
  onRun?: (r: {
    ok: boolean
    error?: unknown
    manual: boolean
    reason: RunReason
    failures: number
    nextAt: number | null
  }) => void
  /** Run once right after start() (default true: a restarted POP catches up at once). */
  runAtStart?: boolean
}

/**
 * Runs a POP's pull in its slot of each interval (plus jitter), retries a failure with capped
 * exponential backoff, and takes manual runs; one run at a time.
 */
export class SyncScheduler {
  readonly opts: SchedulerOptions
  private readonly clock: Clock
  private readonly rand: () => number
  private timer: unknown = null
  private running: Promise<void> | null = null
  private runningReason: RunReason | null = null
  /** A regular or manual run queued behind a wake run in flight. */
  private followUp: Promise<void> | null = null
  private abort: AbortController | null = null
  private stopped = true
  /** Consecutive failures (0 after a success); a run stopped by an abort is not one. */
  failures = 0
  /** The error of the last run that ended (undefined after a success). */
  lastError: unknown = undefined
  /** When the next run is due (ms epoch), or null when stopped. */
  nextAt: number | null = null

  constructor(opts: SchedulerOptions) {
    this.opts = opts
    this.clock = opts.clock ?? systemClock
    this.rand = opts.rand ?? Math.random
  }

  /**
   * Arms the first run: at once (runAtStart, the default), else at the next slot. No-op when
   * started.
   */
  start(): void {
    if (!this.stopped) return
    this.stopped = false
    if (this.opts.runAtStart ?? true) this.arm(this.clock.now())
    else this.arm(nextRegularRun(this.clock.now(), this.opts.popId, this.opts, this.rand))
  }

  /** A manual run now; joins the run in flight if there is one. Resolves when it is done. */
  runNow(): Promise<void> {
    return this.fire('manual')
  }

  /**
   * A wake run (the core said a blob came); joins the run in flight if there is one. The
   * next regular run keeps its slot. Resolves when done; rejects with the run's error.
   */
  async wake(): Promise<void> {
    await this.fire('wake')
    if (this.lastError !== undefined) throw this.lastError
  }

  get isRunning(): boolean {
    return this.running !== null
  }

  /** Stops the timers, aborts a run in flight and waits for it to settle. */
  async stop(): Promise<void> {
    this.stopped = true
    this.nextAt = null
    if (this.timer !== null) this.clock.clearTimeout(this.timer)
    this.timer = null
    this.abort?.abort()
    await this.running
  }

  private arm(at: number): void {
    if (this.stopped) return
    if (this.timer !== null) this.clock.clearTimeout(this.timer)
    this.nextAt = at
    this.timer = this.clock.setTimeout(
      () => {
        this.timer = null
        void this.fire('regular')
      },
      Math.max(0, at - this.clock.now()),
    )
  }

  private fire(reason: RunReason): Promise<void> {
    if (this.running) {
      // A wake run does not check the local tree: a regular or manual run that comes while
      // one is in flight runs after it instead of joining it, else a POP under steady
      // writes (a wake run every second) would never run its hourly check or daily verify.
      if (this.runningReason !== 'wake' || reason === 'wake') return this.running
      this.followUp ??= this.running.then(() => {
        this.followUp = null
        // stop() meanwhile: a regular run is not started; a manual one was asked for
        return this.stopped && reason === 'regular' ? undefined : this.fire(reason)
      })
      return this.followUp
    }
    this.runningReason = reason
    const ac = new AbortController()
    this.abort = ac
    const p = (async () => {
      let ok = true
      let error: unknown
      try {
        await this.opts.run(ac.signal, reason)
        this.failures = 0
      } catch (err) {
        ok = false
        error = err
        // a run stopped by a shutdown (stop()) did not fail: no backoff step is counted
        if (!isClavitorError(err, 'CLA_ERR_SYNC_ABORTED')) this.failures++
      }
      const now = this.clock.now()
      const next = ok
        ? nextRegularRun(now, this.opts.popId, this.opts, this.rand)
        : Math.min(
            now + backoffDelay(this.failures, this.opts, this.rand),
            nextRegularRun(now, this.opts.popId, this.opts, this.rand),
          )
      this.running = null
      this.abort = null
      this.lastError = ok ? undefined : error
      if (!this.stopped) this.arm(next)
      this.opts.onRun?.({
        ok,
        error,
        manual: reason === 'manual',
        reason,
        failures: this.failures,
        nextAt: this.stopped ? null : next,
      })
    })()
    this.running = p
    return p
  }
}
