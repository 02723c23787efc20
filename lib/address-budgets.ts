// Request budgets per client address: a fixed window per key (the first request of a key
// opens it; `max` requests fit in it), the keys kept in a bounded LRU. The same arithmetic
// as @fastify/rate-limit's LocalStore (without its ban, continueExceeding and backoff), so
// one instance can be that plugin's store (http/rate-limit.ts `budgetStore`) and be read by
// code that answers before Fastify (pop-agent/fast-lookups.ts): every request, whichever
// path answers it, counts against one budget. The plugin's own store is private to it.

import { systemClock, type Clock } from './clock.js'

/** A key's budget after a request was counted. */
export interface BudgetState {
  /** Requests counted in the key's current window, this one included. */
  current: number
  /** Milliseconds left in the window. */
  ttl: number
}

/** Options of {@link AddressBudgets}. */
export interface AddressBudgetsOptions {
  /** Requests a key may make per window. */
  max: number
  /** The window, milliseconds. */
  windowMs: number
  /** Keys kept (least recently seen go first). */
  keys: number
  /** Default the system clock. */
  clock?: Clock
}

interface Entry {
  current: number
  start: number
}

/** Fixed-window request budgets per key, in a bounded LRU (see the file's head). */
export class AddressBudgets {
  readonly max: number
  readonly windowMs: number
  private readonly keys: number
  private readonly clock: Clock
  /** Least recently seen first: a counted request moves its key to the end. */
  private readonly map = new Map<string, Entry>()

  constructor(opts: AddressBudgetsOptions) {
    if (!(opts.max >= 1) || !(opts.windowMs >= 1) || !(opts.keys >= 1))
      throw new RangeError('AddressBudgets: max, windowMs and keys must be at least 1')
    this.max = opts.max
    this.windowMs = opts.windowMs
    this.keys = opts.keys
    this.clock = opts.clock ?? systemClock
  }

  /** Keys held. */
  get size(): number {
    return this.map.size
  }

  /** The key's live entry (moved to the LRU's end), or undefined when none or expired. */
  private live(key: string, now: number): Entry | undefined {
    const e = this.map.get(key)
    if (e === undefined) return undefined
    this.map.delete(key)
    if (e.start + this.windowMs <= now) return undefined
    this.map.set(key, e)
    return e
  }

  private open(key: string, now: number): Entry {
    const e = { current: 0, start: now }
    this.map.set(key, e)
    if (this.map.size > this.keys) this.map.delete(this.map.keys().next().value as string)
    return e
  }

  /** Counts one request of `key`, over budget or not (`current > max` = refuse it). */
  count(key: string): BudgetState {
    const now = this.clock.now()
    const e = this.live(key, now) ?? this.open(key, now)
    e.current++
    return { current: e.current, ttl: e.start + this.windowMs - now }
  }

  /**
   * Counts one request of `key` if it fits the budget; undefined, counting nothing, when it
   * does not (the caller hands the request to the path that refuses it, which counts it).
   */
  tryCount(key: string): BudgetState | undefined {
    const now = this.clock.now()
    const e = this.live(key, now) ?? this.open(key, now)
    if (e.current >= this.max) return undefined
    e.current++
    return { current: e.current, ttl: e.start + this.windowMs - now }
  }

  /** Takes back one request counted by `tryCount` (its answer went to another path after all). */
  uncount(key: string): void {
    const e = this.map.get(key)
    if (e !== undefined && e.current > 0) e.current--
  }
}
