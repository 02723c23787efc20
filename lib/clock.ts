// One clock for the whole library: every time decision (a retry's backoff, a webhook's
// window, a session's end, a POP's next slot, a token's expiry, a doctor's skew) reads
// it, in milliseconds since the epoch, and every timer goes through it, so a test moves
// time instead of waiting. Modules take `clock?: Clock` in their options (default
// `systemClock`); a bare `now?: () => number` option is refused by test/lib/layers.test.ts.
// Columns of ours stay in µs (`micros`). What reads Date directly on purpose: elapsed
// times in reports (restore, a POP run, a repair, rsync's idle watchdog), stamps in file
// names, comparisons with file mtimes (staging clean-up, the replica's lag) and the POP
// watch's own sweep timer: wall-clock measurements, not decisions a test needs to move.

/**
 * The one clock every part of the engine reads time and sets timers through; tests pass a
 * {@link ManualClock}.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number
  /** Resolves after `ms` milliseconds (a test clock resolves at once, moving itself). */
  sleep(ms: number): Promise<void>
  /** A timer; the system clock's does not keep the process alive. */
  setTimeout(fn: () => void, ms: number): unknown
  /**
   * Cancels a timer made by `setTimeout`.
   */
  clearTimeout(handle: unknown): void
}

/**
 * The machine's clock and Node's timers.
 */
export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
  setTimeout: (fn, ms) => {
    const h = setTimeout(fn, ms)
    h.unref?.()
    return h
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
}

/** The clock in µs, the unit of every *_at column of ours. */
export const micros = (clock: Clock = systemClock): number => Math.round(clock.now() * 1000)

/**
 * A clock whose time is read from `nowMs` (a value a test moves, a fixed instant), with
 * the system's timers and sleep.
 */
export function clockOf(nowMs: () => number): Clock {
  return { ...systemClock, now: nowMs }
}

/**
 * A clock that only moves when told to: sleep() advances it instead of waiting, and its
 * timers fire when an advance passes them (in time order).
 */
export class ManualClock implements Clock {
  private timers = new Map<number, { at: number; fn: () => void }>()
  private nextId = 1
  constructor(private t: number = Date.now()) {}
  now(): number {
    return this.t
  }
  /** Moves time forward, firing every timer it passes. */
  advance(ms: number): void {
    this.set(this.t + ms)
  }
  /**
   * Sets the time (ms since the epoch), firing the timers that fall due.
   */
  set(ms: number): void {
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined
      for (const e of this.timers) if (e[1].at <= ms && (!next || e[1].at < next[1].at)) next = e
      if (!next) break
      this.timers.delete(next[0])
      this.t = Math.max(this.t, next[1].at)
      next[1].fn()
    }
    this.t = ms
  }
  async sleep(ms: number): Promise<void> {
    this.advance(ms)
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++
    this.timers.set(id, { at: this.t + ms, fn })
    return id
  }
  /**
   * Cancels a timer made by `setTimeout`.
   */
  clearTimeout(h: unknown): void {
    this.timers.delete(h as number)
  }
}
