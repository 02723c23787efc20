// The retry worker: rows still pending after the inline push (Paddle down, an answer lost,
// a parent not there yet) are pushed again, oldest first, in dependency order, with
// per-row backoff, stopping when Paddle rate-limits us.
import { load, nowMicros, type BillingContext } from './context.js'
import { ENTITIES, ENTITY_NAMES } from './entities.js'
import type { Pusher } from './push.js'

/** What one pass of the retry worker did. */
export interface RetryReport {
  /** Rows tried in this pass. */
  attempted: number
  /** Rows now in sync. */
  synced: number
  /** Rows still pending (will be retried). */
  pending: number
  /** Rows marked failed in this pass (a 4xx that will never succeed). */
  failed: number
  /**
   * Of the pending rows: creates whose earlier attempt got no answer and may still land at
   * Paddle; looked for, not found yet, not sent again (push.ts, settling; --force too).
   */
  settling: number
  /** Set when Paddle rate-limited us; the pass stopped early. µs epoch. */
  rateLimitedUntil?: number
}

export class RetryWorker {
  private timer: NodeJS.Timeout | undefined
  private running: Promise<unknown> | undefined

  constructor(
    private readonly ctx: BillingContext,
    private readonly pusher: Pusher,
  ) {}

  /**
   * One pass over rows pending longer than minAgeMs whose backoff has passed (`force`:
   * every pending row now, for an operator's `billing retry --once --force`). Failed rows
   * are never retried; an update to the row makes it pending again. `force` bypasses
   * neither a push in progress elsewhere (its lease) nor a create still settling: those
   * are only looked for at Paddle, never sent again (push.ts).
   */
  async retryOnce(opts: { force?: boolean } = {}): Promise<RetryReport> {
    const report: RetryReport = { attempted: 0, synced: 0, pending: 0, failed: 0, settling: 0 }
    // settle marks past their window (the row was linked by a webhook meanwhile, or left)
    this.ctx.db
      .prepare(`DELETE FROM billing_leases WHERE key LIKE 'unsettled:%' AND until <= ?`)
      .run(nowMicros(this.ctx))
    const nowUs = opts.force ? Number.MAX_SAFE_INTEGER : nowMicros(this.ctx)
    const cutoff = opts.force ? Number.MAX_SAFE_INTEGER : nowUs - this.ctx.retry.minAgeMs * 1000
    let budget = this.ctx.retry.batch
    for (const name of ENTITY_NAMES) {
      const spec = ENTITIES[name]
      const rows = this.ctx.db
        .prepare(
          `SELECT id FROM ${spec.table} WHERE pending_since IS NOT NULL AND failed_at IS NULL AND pending_since <= ?
             AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY pending_since LIMIT ?`,
        )
        .all(cutoff, nowUs, budget) as Array<{ id: string }>
      for (const { id } of rows) {
        const blocked = this.ctx.paddle?.blockedForMs() ?? 0
        if (blocked > 0) {
          report.rateLimitedUntil = (this.ctx.clock.now() + blocked) * 1000
          break
        }
        const before = load(this.ctx, spec, id)
        if (!before || before.pending_since == null || before.failed_at != null) continue // done meanwhile (a linked subscription)
        if (!(await this.pusher.push(name, id))) continue // another process holds the row
        report.attempted += 1
        budget -= 1
        const after = load(this.ctx, spec, id)!
        if (after.failed_at != null) report.failed += 1
        else if (after.pending_since == null) report.synced += 1
        else {
          report.pending += 1
          if (String(after.last_error ?? '').startsWith('CLA_ERR_BILLING_UNSETTLED'))
            report.settling += 1
        }
      }
      if (report.rateLimitedUntil || budget <= 0) break
    }
    return report
  }

  /** Runs retryOnce every intervalMs in this process (the core's `serve`). */
  start(onReport?: (r: RetryReport) => void, onError?: (err: unknown) => void): void {
    if (this.timer) return
    this.timer = setInterval(() => {
      if (this.running) return
      this.running = this.retryOnce()
        .then((r) => onReport?.(r))
        .catch((err) => onError?.(err))
        .finally(() => {
          this.running = undefined
        })
    }, this.ctx.retry.intervalMs)
    this.timer.unref()
  }

  /** Stops the worker and waits for a pass in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    await this.running
  }
}
