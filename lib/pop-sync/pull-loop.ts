// A POP's pulls over time: the hourly staggered scheduler (the floor and the repair pass,
// with its local tree check) and, beside it, the wake loop on the core's feed long-poll
// (a pull within seconds of a commit, without the tree check). `pop run` starts one; tests
// and embedders can too. Each run goes through the scheduler, so there is one at a time.
import type { Clock } from '../clock.js'
import type { Logger } from '../log.js'
import type { PopSync } from './agent.js'
import { SyncScheduler, type ScheduleOptions, type SchedulerOptions } from './scheduler.js'
import { WakeLoop, WAKE_WAIT_S, type WakeLoopOptions } from './wake.js'

/** What a {@link PullLoop} runs and how often. */
export interface PullLoopOptions {
  /** The POP's sync agent (Pop.sync): its feed, its runs, its cursor. */
  sync: Pick<PopSync, 'run' | 'cursor' | 'opts'>
  /** Long-poll length, seconds (1..50); 0 = no long-poll, hourly pulls only. Default {@link WAKE_WAIT_S}. */
  waitS?: number
  /** The hourly schedule (lib/pop-sync/scheduler.ts). */
  schedule?: ScheduleOptions & { runAtStart?: boolean }
  /** Pace of the wake loop (least gap between wake pulls, backoff). */
  wake?: Pick<WakeLoopOptions, 'minGapMs' | 'backoffBaseMs' | 'backoffMaxMs'>
  /** Called after each run (logs, metrics). */
  onRun?: SchedulerOptions['onRun']
  /** Time and timers (tests). Default the system's. */
  clock?: Clock
  /** Randomness in [0, 1) for the scheduler's jitter (tests). Default Math.random. */
  rand?: () => number
  /** Where the wake loop logs its failures. Default silent. */
  log?: Logger
}

/** The scheduler and the wake loop of one POP. */
export class PullLoop {
  readonly scheduler: SyncScheduler
  /** Null when the long-poll is off (waitS 0). */
  readonly wake: WakeLoop | null

  constructor(opts: PullLoopOptions) {
    const { sync } = opts
    this.scheduler = new SyncScheduler({
      popId: sync.opts.popId,
      ...opts.schedule,
      run: (signal, reason) => sync.run({ signal, check: reason !== 'wake', trigger: reason }),
      ...(opts.onRun ? { onRun: opts.onRun } : {}),
      ...(opts.clock ? { clock: opts.clock } : {}),
      ...(opts.rand ? { rand: opts.rand } : {}),
    })
    const waitS = opts.waitS ?? WAKE_WAIT_S
    this.wake =
      waitS > 0
        ? new WakeLoop({
            feed: sync.opts.feed,
            cursor: () => sync.cursor(),
            pull: () => this.scheduler.wake(),
            waitS,
            ...opts.wake,
            ...(opts.clock ? { clock: opts.clock } : {}),
            ...(opts.log ? { log: opts.log } : {}),
          })
        : null
  }

  /** Starts the scheduler (a run at once by default) and the long-poll. */
  start(): void {
    this.scheduler.start()
    this.wake?.start()
  }

  /** Stops the long-poll and the scheduler; a run in flight is aborted and awaited. */
  async stop(): Promise<void> {
    await Promise.all([this.wake?.stop(), this.scheduler.stop()])
  }
}
