// What the POP API does with refusals that never reach authentication, and how it stops a
// source from filling the audit log with ones that do.
//
// The audit log is hash-chained and fsynced: one row costs a disk flush. A client without
// any credential must not be able to buy rows with TCP connections, so:
//  - Refusals before authentication (an address in no allowlist at connect, a socket
//    that closes or times out before its TLS handshake ends, bytes that are not HTTP,
//    an address over its refusal limit) are COUNTED, not audited one by one: a counter
//    (metric) at once, and one summary row per source address and reason per interval
//    (kind pop.refusals, data.count, data.from/to in ms). Memory is bounded: past
//    `maxSources` addresses in an interval, the rest are summed into one row without ip.
//  - Refusals that reached a decision about a credential (a certificate the handshake
//    refused, every authentication decision) keep their own audit row, and are counted
//    per address: past `maxRefusals` in `windowMs`, the address is LIMITED until the
//    window ends: new connections from it are dropped at connect and requests on open
//    connections are answered 429 before authentication, both only counted.
// So the trail stays complete for anything that reached authentication, and an anonymous
// flood costs one row per source and interval.
import { systemClock, type Clock } from '../clock.js'
import type { Db } from '../db/open.js'
import { appendEvent } from '../audit/log.js'
import { normalizeIp } from './allowlist.js'

export interface RefusalGuardOptions {
  db: Db
  /** Summary interval, ms: one pop.refusals row per address and reason. Default 60000. */
  summaryIntervalMs?: number
  /** Audited refusals per address per window before the address is limited. Default 60. */
  maxRefusals?: number
  /** Window of that count, ms. Default 60000. */
  windowMs?: number
  /** Addresses tracked per interval (summaries and limits). Default 4096. */
  maxSources?: number
  /** Called on every counted refusal (a metric). */
  onCount?: (stage: RefusalStage, reason: string) => void
  /** The clock (lib/clock.ts). Default the system's. */
  clock?: Clock
}

/** Where a counted refusal happened: at connect, in the TLS handshake, or on HTTP. */
export type RefusalStage = 'connect' | 'tls' | 'http'

interface Tally {
  ip: string | null
  stage: RefusalStage
  reason: string
  count: number
  from: number
  to: number
}

interface Budget {
  windowStart: number
  refusals: number
}

export class RefusalGuard {
  private readonly db: Db
  private readonly now: () => number
  private readonly intervalMs: number
  private readonly maxRefusals: number
  private readonly windowMs: number
  private readonly maxSources: number
  private readonly onCount: RefusalGuardOptions['onCount']
  private tallies = new Map<string, Tally>()
  private readonly budgets = new Map<string, Budget>()
  private timer: NodeJS.Timeout | undefined

  constructor(opts: RefusalGuardOptions) {
    this.db = opts.db
    const clock = opts.clock ?? systemClock
    this.now = () => clock.now()
    this.intervalMs = opts.summaryIntervalMs ?? 60_000
    this.maxRefusals = opts.maxRefusals ?? 60
    this.windowMs = opts.windowMs ?? 60_000
    this.maxSources = opts.maxSources ?? 4096
    this.onCount = opts.onCount
    for (const [name, v] of [
      ['summaryIntervalMs', this.intervalMs],
      ['maxRefusals', this.maxRefusals],
      ['windowMs', this.windowMs],
      ['maxSources', this.maxSources],
    ] as const) {
      if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer`)
    }
  }

  /** Starts the summary timer (unref'd). */
  start(): void {
    if (this.timer) return
    this.timer = setInterval(() => this.flush(), this.intervalMs)
    this.timer.unref()
  }

  /** Stops the timer and writes what is pending. */
  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    this.flush()
  }

  /** Counts a refusal that gets no row of its own (summarized at the next flush). */
  count(ip: string | undefined | null, stage: RefusalStage, reason: string): void {
    const addr = normalizeIp(ip ?? undefined) ?? null
    const t = this.now()
    this.onCount?.(stage, reason)
    let key = `${addr ?? ''}|${stage}|${reason}`
    let tally = this.tallies.get(key)
    if (!tally && this.tallies.size >= this.maxSources) {
      key = `|${stage}|${reason}` // the overflow row: sources beyond the bound, summed
      tally = this.tallies.get(key)
      if (!tally) {
        tally = { ip: null, stage, reason, count: 0, from: t, to: t }
        this.tallies.set(key, tally)
      }
    } else if (!tally) {
      tally = { ip: addr, stage, reason, count: 0, from: t, to: t }
      this.tallies.set(key, tally)
    }
    tally.count++
    tally.to = t
  }

  /** Notes a refusal that had its own audit row, towards the address's limit. */
  noteAudited(ip: string | undefined | null): void {
    const addr = normalizeIp(ip ?? undefined)
    if (!addr) return
    const t = this.now()
    let b = this.budgets.get(addr)
    if (!b || t - b.windowStart >= this.windowMs) {
      if (!b && this.budgets.size >= this.maxSources) this.pruneBudgets(t)
      b = { windowStart: t, refusals: 0 }
      this.budgets.set(addr, b)
    }
    b.refusals++
  }

  /**
   * Whether this address used up its refusals for the current window; if so its
   * requests are refused before authentication (and only counted). Returns the
   * seconds until the window ends, or 0 when the address is not limited.
   */
  limitedFor(ip: string | undefined | null): number {
    const addr = normalizeIp(ip ?? undefined)
    if (!addr) return 0
    const b = this.budgets.get(addr)
    if (!b) return 0
    const left = b.windowStart + this.windowMs - this.now()
    if (left <= 0) {
      this.budgets.delete(addr)
      return 0
    }
    return b.refusals >= this.maxRefusals ? Math.ceil(left / 1000) : 0
  }

  /** Writes one pop.refusals row per tally and starts a new interval. */
  flush(): void {
    if (this.tallies.size === 0) return
    const tallies = [...this.tallies.values()]
    this.tallies = new Map()
    try {
      // one transaction: one flush to disk for the interval, not one per source
      this.db.transaction(() => {
        for (const s of tallies) {
          appendEvent(this.db, {
            kind: 'pop.refusals',
            actor: 'unknown',
            outcome: 'refused',
            reason: s.reason,
            ip: s.ip ?? undefined,
            data: { stage: s.stage, count: s.count, from: s.from, to: s.to },
          })
        }
      })()
    } catch {
      // the metric has them; a failing audit log is reported by its own writers
    }
  }

  private pruneBudgets(t: number): void {
    for (const [addr, b] of this.budgets) {
      if (t - b.windowStart >= this.windowMs) this.budgets.delete(addr)
    }
    // still full: forget the oldest window (a Map keeps insertion order)
    while (this.budgets.size >= this.maxSources) {
      const first = this.budgets.keys().next().value
      if (first === undefined) break
      this.budgets.delete(first)
    }
  }
}
