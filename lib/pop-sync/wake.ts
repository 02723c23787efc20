// The POP's wake loop: it holds a long-poll on the core's feed (GET /pop/v1/feed?wait=, the
// same authenticated client as every pull) and starts a pull as soon as the core answers
// that a blob past this POP's cursor is committed. Still pull: the core sends a wake-up, the
// POP fetches with the same feed pages, rsync --files-from and verification as the hourly
// pull, which stays as the floor and the repair pass (lib/pop-sync/scheduler.ts).
//
// Bounds: one long-poll at a time; at most one wake pull per `minGapMs` (a burst of writes
// costs each POP one pull per gap, not one per blob); a wait that fails (the core restarts,
// the link drops) is retried with capped exponential backoff; a wake pull that fails, or
// ends without moving the cursor (a refused page, an identity alarm), backs off the same
// way instead of spinning on a feed that keeps saying "new".
import { systemClock, type Clock } from '../clock.js'
import { claError } from '../errors.js'
import type { Logger } from '../log.js'
import { silentLogger } from '../log.js'
import type { FeedClient } from './transport.js'

/** Default long-poll length, seconds (the core caps it at 50: lib/core-sync/feed.ts). */
export const WAKE_WAIT_S = 45
/** Default least time between the starts of two wake pulls, ms. */
export const WAKE_MIN_GAP_MS = 1000

/** What a {@link WakeLoop} needs and how it paces itself. */
export interface WakeLoopOptions {
  /** The core's feed; its `wait` is the long-poll. */
  feed: FeedClient
  /** This POP's cursor now (meta sync.cursor): what the long-poll waits past. */
  cursor: () => string | null
  /** One pull (a wake run of the scheduler); rejects on failure. */
  pull: () => Promise<unknown>
  /** Long-poll length, seconds, 1..50. Default {@link WAKE_WAIT_S}. */
  waitS?: number
  /** Least time between two wake pulls' starts, ms. Default {@link WAKE_MIN_GAP_MS}. */
  minGapMs?: number
  /** First retry after a failed wait or pull, ms; doubles per failure. Default 1000. */
  backoffBaseMs?: number
  /** Backoff cap, ms. Default 60,000. */
  backoffMaxMs?: number
  /** Time and timers (tests). Default the system's. */
  clock?: Clock
  log?: Logger
}

/** What the loop has done (for metrics, status and tests). */
export interface WakeStats {
  /** Long-polls answered. */
  waits: number
  /** Of which said a blob came, and started a pull. */
  wakes: number
  /** Waits or wake pulls that failed (each followed by a backoff). */
  failures: number
  /** Consecutive failures now (0 after a good wait and pull). */
  failing: number
  /** Empty answers that came before half the wait was up (each followed by the rest of the wait). */
  early: number
  /** When the loop asks again after a failure (ms epoch), null when it is not backing off. */
  retryAt: number | null
}

/**
 * Holds a long-poll on the core's feed and pulls when it answers with something new. Start
 * it beside the {@link SyncScheduler}; stop it before closing the POP.
 */
export class WakeLoop {
  private readonly opts: WakeLoopOptions
  private readonly clock: Clock
  private readonly log: Logger
  private readonly waitS: number
  private ac: AbortController | null = null
  private loop: Promise<void> | null = null
  private lastPullAt = -Infinity
  private sleeping: { timer: unknown; wake: () => void } | null = null
  readonly stats: WakeStats = {
    waits: 0,
    wakes: 0,
    failures: 0,
    failing: 0,
    early: 0,
    retryAt: null,
  }

  constructor(opts: WakeLoopOptions) {
    if (!opts.feed.wait)
      throw claError('CLA_ERR_INVALID_OPTION', 'this feed client has no long-poll (wait)')
    const waitS = opts.waitS ?? WAKE_WAIT_S
    if (!Number.isInteger(waitS) || waitS < 1 || waitS > 50)
      throw claError(
        'CLA_ERR_INVALID_OPTION',
        `the feed wait must be 1 to 50 seconds, got ${waitS}`,
        {
          details: { field: 'waitS' },
        },
      )
    this.opts = opts
    this.waitS = waitS
    this.clock = opts.clock ?? systemClock
    this.log = opts.log ?? silentLogger()
  }

  get running(): boolean {
    return this.loop !== null
  }

  /** Starts the loop (no-op when running). */
  start(): void {
    if (this.loop) return
    const ac = new AbortController()
    this.ac = ac
    this.loop = this.run(ac.signal).finally(() => {
      this.loop = null
    })
  }

  /** Stops the loop: ends the long-poll in flight, waits for a wake pull in flight. */
  async stop(): Promise<void> {
    this.ac?.abort()
    this.ac = null
    this.sleeping?.wake()
    await this.loop
  }

  private async run(signal: AbortSignal): Promise<void> {
    const o = this.opts
    while (!signal.aborted) {
      let fresh: boolean
      const asked = this.clock.now()
      try {
        const page = await o.feed.wait!(o.cursor(), this.waitS, signal)
        this.stats.waits++
        fresh = page.items.length > 0
      } catch (err) {
        if (signal.aborted) return
        await this.failed(err, 'feed wait failed', signal)
        continue
      }
      if (!fresh) {
        this.stats.failing = 0
        // An empty answer well before the wait was up: a core that does not hold waits (one
        // older than the long-poll ignores `wait`), or another agent with our id replacing
        // ours. Do not ask again at once: let the wait's time pass first.
        const early = asked + this.waitS * 1000 - this.clock.now()
        if (early > (this.waitS * 1000) / 2) {
          this.stats.early++
          await this.sleep(early, signal)
        }
        continue // a timeout: wait again
      }
      this.stats.wakes++
      await this.sleep(this.lastPullAt + (o.minGapMs ?? WAKE_MIN_GAP_MS) - this.clock.now(), signal)
      if (signal.aborted) return
      this.lastPullAt = this.clock.now()
      const before = o.cursor()
      try {
        await o.pull()
      } catch (err) {
        // our own stop; a run someone else aborted (an embedder's run we joined) is a
        // failed pull like any other: back off and go on
        if (signal.aborted) return
        await this.failed(err, 'wake pull failed', signal)
        continue
      }
      if (o.cursor() === before) {
        // the core says "new" but the pull moved nothing: a refused page, an alarm. The
        // regular runs deal with it; do not ask again at once.
        await this.failed(
          claError('CLA_ERR_SYNC_FEED', 'a wake pull did not move the cursor'),
          'wake pull moved nothing',
          signal,
        )
        continue
      }
      this.stats.failing = 0
    }
  }

  private async failed(err: unknown, msg: string, signal: AbortSignal): Promise<void> {
    this.stats.failures++
    this.stats.failing++
    const base = this.opts.backoffBaseMs ?? 1000
    const max = this.opts.backoffMaxMs ?? 60_000
    const delay = Math.min(max, base * 2 ** Math.min(this.stats.failing - 1, 30))
    this.log.warn(
      { err, code: (err as { code?: string }).code, retry_ms: delay },
      `${msg}; the hourly pull goes on`,
    )
    this.stats.retryAt = this.clock.now() + delay
    await this.sleep(delay, signal)
    this.stats.retryAt = null
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (ms <= 0 || signal.aborted) return Promise.resolve()
    return new Promise<void>((resolve) => {
      const wake = () => {
        if (!this.sleeping) return
        this.clock.clearTimeout(this.sleeping.timer)
        this.sleeping = null
        resolve()
      }
      this.sleeping = { timer: this.clock.setTimeout(wake, ms), wake }
    })
  }
}
