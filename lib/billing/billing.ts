// Billing: the dual-write layer with Paddle (we lead, Paddle follows) as other areas see it
// (`core.billing`; docs/billing.md). This class only assembles the parts, one concept a
// file, and keeps the one public API:
//
//   crud.ts          validate input, write our rows (pending), read them back
//   push.ts          one leased attempt to bring a row to Paddle (find before re-create)
//   retry-worker.ts  rows still pending: pushed again, with backoff
//   snapshots.ts     Paddle's snapshots (webhook data) applied to our rows
//   reports.ts       the customer tree and revenue by discount
//   duplicates.ts    more than one Paddle object for one row: found, the safe ones archived
//   plans.ts         plans (tiers): prices and limits, ours only
//   entitlements.ts  what a subscription's items entitle it to (lib/credentials enforces)
//
// What differs per entity is in its description (entities.ts and the entities-*.ts files),
// never in these.
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import { systemClock, type Clock } from '../clock.js'
import { mapCtx, retryDefaults, type BillingContext, type RetryOptions } from './context.js'
import { Crud, type PendingRow, type PublicRow } from './crud.js'
import { findDuplicates, type DuplicateReport } from './duplicates.js'
import { entitlementsOf, type Entitlements } from './entitlements.js'
import { ENTITIES, type EntityName, type EntitySpec, type PaddleObj, type Row } from './entities.js'
import type { PaddleClient } from './paddle-client.js'
import { createPlan, getPlan, listPlans, updatePlan, type Plan } from './plans.js'
import { planMargins, type MarginChange, type MarginPlan } from './margins.js'
import { Pusher } from './push.js'
import {
  eventCursor,
  reconcile,
  resyncOne,
  type EventCursor,
  type ReconcileReport,
} from './reconcile.js'
import { appendEvent } from '../audit/log.js'
import { load } from './context.js'
import { subscriptions } from './entities-subscriptions.js'
import { discardChange, parseAction, writeChange } from './subscription-lifecycle.js'
import {
  customerTree,
  revenueByDiscount,
  type CustomerNode,
  type RevenueOptions,
  type RevenueRow,
} from './reports.js'
import { RetryWorker, type RetryReport } from './retry-worker.js'
import { applySnapshot, type ParkedSnapshot } from './snapshots.js'

export type { RetryOptions } from './context.js'
export type { PendingRow, PublicRow } from './crud.js'
export type { DuplicateGroup, DuplicateReport } from './duplicates.js'
export type { Entitlements, PlanUse } from './entitlements.js'
export type { MarginChange, MarginPlan, MarginSkip } from './margins.js'
export type {
  EventCursor,
  EventsPassReport,
  ReconcileCounts,
  ReconcileReport,
} from './reconcile.js'
export type { Plan, PlanCreate, PlanUpdate } from './plans.js'
export type { SubscriptionAction } from './subscription-lifecycle.js'
export type { CustomerNode, RevenueOptions, RevenueRow } from './reports.js'
export type { RetryReport } from './retry-worker.js'
export type { ParkedSnapshot } from './snapshots.js'

/** What applying MSP margins found and did (Billing.applyMargins). */
export interface MarginReport extends MarginPlan {
  /** Changes made (our row written, pushed: `state` synced, pending or failed). */
  applied: Array<MarginChange & { state: string }>
}

import type { AuditSink } from './events.js'
export type { AuditSink }

/** How Paddle webhooks are checked (Paddle-Signature). */
export interface WebhookOptions {
  /** Destination secrets; several during rotation (any may match). */
  secrets?: string[]
  /** Accepted |now − ts| in seconds, both directions. Default 10. */
  toleranceS?: number
}

/** What a {@link Billing} works with; only `db` is required. */
export interface BillingOptions {
  /** The core's database: our billing rows (the mirror of Paddle) live in it. */
  db: Db
  /** Null/undefined: Paddle not configured; writes stay pending with a note. */
  paddle?: PaddleClient | null
  /** Time source. Default: the system clock. */
  clock?: Clock
  /** Where webhook deliveries and duplicate scans are audited; none: they are not. */
  audit?: AuditSink
  /** Retry worker and push settings; each has a default. */
  retry?: RetryOptions
  /** Webhook secrets and timestamp tolerance. */
  webhook?: WebhookOptions
}

/** The default time between two reconcile passes of `core serve`: an hour. */
export const RECONCILE_INTERVAL_MS = 3_600_000

/** What {@link Billing.startWorkers} runs, and where it reports. */
export interface BillingWorkersOptions {
  /** Time between reconcile passes in ms. Default {@link RECONCILE_INTERVAL_MS}; 0: none. */
  reconcileIntervalMs?: number
  /** Each retry pass's report. */
  onRetryReport?: (r: RetryReport) => void
  /** Each reconcile pass's report. */
  onReconcileReport?: (r: ReconcileReport) => void
  /** A pass that failed, and which. */
  onError?: (err: unknown, worker: 'retry' | 'reconcile') => void
}

/**
 * The dual-write layer with Paddle (`core.billing`; docs/billing.md): our rows are written
 * first (pending), then brought to Paddle, retried until Paddle confirms them; Paddle's
 * webhooks and reconcile runs update them back.
 */
export class Billing {
  readonly db: Db
  readonly paddle: PaddleClient | null
  readonly clock: Clock
  readonly audit: AuditSink | undefined
  readonly retryOptions: Required<RetryOptions>
  readonly webhookOptions: { secrets: string[]; toleranceS: number }
  private readonly ctx: BillingContext
  private readonly rows: Crud
  private readonly pusher: Pusher
  private readonly worker: RetryWorker
  private reconcileTimer: unknown
  private reconcileRun: Promise<void> | undefined

  constructor(opts: BillingOptions) {
    this.db = opts.db
    this.paddle = opts.paddle ?? null
    this.clock = opts.clock ?? systemClock
    this.audit = opts.audit
    this.retryOptions = retryDefaults(opts.retry)
    this.webhookOptions = {
      secrets: (opts.webhook?.secrets ?? []).filter(Boolean),
      toleranceS: opts.webhook?.toleranceS ?? 10,
    }
    this.ctx = {
      db: this.db,
      paddle: this.paddle,
      clock: this.clock,
      retry: this.retryOptions,
      map: mapCtx(this.db),
    }
    this.rows = new Crud(this.ctx)
    this.pusher = new Pusher(this.ctx)
    this.worker = new RetryWorker(this.ctx, this.pusher)
  }

  // --- reading ---------------------------------------------------------------------------
  /** One row as the API shows it (JSON columns parsed, `state`: synced | pending | failed). */
  get(entity: string, id: string): PublicRow {
    return this.rows.get(entity, id)
  }

  /** Rows of one entity, newest first; `after` is an id for paging, `customer_id` filters when the table has it. */
  list(
    entity: string,
    opts: {
      limit?: number
      after?: string
      customer_id?: string
      state?: 'pending' | 'failed' | 'synced'
    } = {},
  ): PublicRow[] {
    return this.rows.list(entity, opts)
  }

  /** Every row not yet in sync with Paddle: pending (will be retried) and failed (will not). */
  pending(): PendingRow[] {
    return this.rows.pending()
  }

  // --- writing (the dual write) ----------------------------------------------------------
  /**
   * Validates `input`, writes our row (pending), pushes it to Paddle and returns the row.
   * Paddle failing does not fail the call: the row comes back with state "pending" (or
   * "failed") and last_error. Bad input throws a typed error and writes nothing.
   */
  async create(entity: string, input: unknown, opts: { actor?: string } = {}): Promise<PublicRow> {
    const written = this.rows.writeNew(entity, input)
    await this.pusher.push(written.push.entity, written.push.id)
    const row = this.rows.get(written.entity, written.id)
    await this.followMargins(written.entity, row, undefined, opts.actor)
    return row
  }

  /** Validates a partial change, writes it (pending) and pushes it to Paddle. */
  async update(
    entity: string,
    id: string,
    patch: unknown,
    opts: { actor?: string } = {},
  ): Promise<PublicRow> {
    const before = this.rows.get(entity, id)
    const name = this.rows.writeChange(entity, id, patch)
    await this.pusher.push(name, id)
    const row = this.rows.get(name, id)
    await this.followMargins(name, row, before, opts.actor)
    return row
  }

  /** After a write whose description names a margin scope: the affected subscriptions follow. */
  private async followMargins(
    entity: EntityName,
    row: PublicRow,
    before: PublicRow | undefined,
    actor = 'system',
  ): Promise<void> {
    const scope = ENTITIES[entity].marginScope?.(row as Row, before as Row | undefined)
    if (scope) await this.applyMargins({ customerId: scope, actor, reason: `${entity} ${row.id}` })
  }

  /**
   * Brings existing subscriptions to their MSP's margin (margins.ts): under one customer
   * (an MSP: its whole tree) or everywhere. Each change is a `set_discount` action from the
   * next billing period (our row first, then Paddle, audited); promotions and subscriptions
   * with an action waiting are reported, not changed. One `billing.margin` audit event
   * sums it up. `dryRun`: only the plan.
   */
  async applyMargins(
    opts: { customerId?: string; dryRun?: boolean; actor?: string; reason?: string } = {},
  ): Promise<MarginReport> {
    const plan = planMargins(this.db, opts.customerId ? { customerId: opts.customerId } : undefined)
    const report: MarginReport = { ...plan, applied: [] }
    if (opts.dryRun) return report
    for (const c of plan.changes) {
      try {
        const row = await this.changeSubscription(
          c.subscription_id,
          { action: 'set_discount', discount_id: c.to, effective_from: 'next_billing_period' },
          { actor: opts.actor ?? 'system' },
        )
        report.applied.push({ ...c, state: String(row.state) })
      } catch (err) {
        report.skipped.push({
          subscription_id: c.subscription_id,
          reason: 'failed',
          detail: (err as Error).message,
        })
      }
    }
    if (plan.changes.length > 0 || plan.skipped.length > 0) {
      appendEvent(this.db, {
        kind: 'billing.margin',
        actor: opts.actor ?? 'system',
        outcome: report.skipped.some((s) => s.reason === 'failed') ? 'partial' : 'ok',
        data: {
          scope: opts.customerId ?? null,
          reason: opts.reason ?? null,
          applied: report.applied.map((a) => [a.subscription_id, a.from, a.to]),
          skipped: report.skipped.map((s) => [s.subscription_id, s.reason]),
        },
      })
    }
    return report
  }

  /**
   * One attempt to bring a pending row to Paddle. Never throws for Paddle's failures: they
   * are recorded on the row. Returns false when the row was leased elsewhere (push.ts).
   */
  push(entity: EntityName, id: string): Promise<boolean> {
    return this.pusher.push(entity, id)
  }

  // --- retry worker ----------------------------------------------------------------------
  /**
   * One pass over rows pending longer than minAgeMs whose backoff has passed (`force`:
   * every pending row now, for an operator's `billing retry --once --force`). Failed rows
   * are never retried; an update to the row makes it pending again. Even forced, a row
   * pushed elsewhere right now is skipped and a create that may still land at Paddle
   * (no answer came) is only looked for, never sent again (`report.settling`).
   */
  retryOnce(opts: { force?: boolean } = {}): Promise<RetryReport> {
    return this.worker.retryOnce(opts)
  }

  /** Runs retryOnce every intervalMs in this process (the core's `serve`). */
  startRetryWorker(onReport?: (r: RetryReport) => void, onError?: (err: unknown) => void): void {
    this.worker.start(onReport, onError)
  }

  /** Stops the retry worker and the reconcile timer, and waits for passes in progress. */
  async stop(): Promise<void> {
    if (this.reconcileTimer !== undefined) this.clock.clearTimeout(this.reconcileTimer)
    this.reconcileTimer = undefined
    await this.reconcileRun
    await this.worker.stop()
  }

  // --- duplicates at Paddle --------------------------------------------------------------
  /**
   * Finds Paddle objects that share one clavitor_id (products, prices, discounts,
   * transactions), keeps the one our row is linked to, archives unused extra products,
   * prices and discounts (`resolve`; otherwise a dry run) and reports the rest; each group
   * is audited (`billing.duplicate`, outcome alarm when a person is needed).
   */
  async duplicates(opts: { resolve?: boolean } = {}): Promise<DuplicateReport> {
    if (!this.paddle)
      throw claError('CLA_ERR_PADDLE_NOT_CONFIGURED', 'Paddle is not configured: nothing to scan')
    return findDuplicates(this.ctx, {
      resolve: opts.resolve ?? false,
      alarm: (ev) =>
        this.audit?.append({
          kind: 'billing.duplicate',
          actor: 'billing',
          ...ev,
          at: this.clock.now() * 1000,
        }),
    })
  }

  // --- the subscription's life, led by us -------------------------------------------------
  /**
   * Cancels, pauses, resumes, changes the items of, or sets the discount of a subscription
   * (subscription-lifecycle.ts): checked against our row, written there first (pending,
   * audited), then pushed to Paddle; Paddle failing leaves it pending (retried) or failed.
   * `input` is `{action: 'cancel', effective_from}`, `{action: 'pause', effective_from,
   * resume_at?}`, `{action: 'resume'}`, `{action: 'change_items', items,
   * proration_billing_mode}` or `{action: 'set_discount', discount_id, effective_from}`.
   */
  async changeSubscription(
    id: string,
    input: unknown,
    opts: { actor?: string } = {},
  ): Promise<PublicRow> {
    const a = parseAction(input)
    this.db
      .transaction(() => {
        const row = load(this.ctx, subscriptions, id)
        if (!row)
          throw claError('CLA_ERR_NOT_FOUND', `subscription ${id} does not exist`, {
            details: { entity: 'subscriptions', id },
          })
        writeChange(this.db, row, a, {
          nowUs: this.clock.now() * 1000,
          actor: opts.actor ?? 'system',
        })
      })
      .immediate()
    await this.pusher.push('subscriptions', id)
    return this.rows.get('subscriptions', id)
  }

  /**
   * Gives up a waiting subscription action (typically one Paddle refused): our row takes
   * Paddle's state again. Needs Paddle.
   */
  async discardSubscriptionChange(id: string, opts: { actor?: string } = {}): Promise<PublicRow> {
    if (!this.paddle)
      throw claError(
        'CLA_ERR_PADDLE_NOT_CONFIGURED',
        "Paddle is not configured: its state can't be read",
      )
    const row = load(this.ctx, subscriptions, id)
    if (!row) throw claError('CLA_ERR_NOT_FOUND', `subscription ${id} does not exist`)
    const o = await discardChange(this.paddle, this.ctx.map, row, opts.actor ?? 'system')
    this.pusher.merge(subscriptions, load(this.ctx, subscriptions, id)!, o, true)
    return this.rows.get('subscriptions', id)
  }

  // --- reconcile: converge with Paddle ----------------------------------------------------
  /**
   * One pass (reconcile.ts): Paddle's events after the stored cursor (`GET /events`, each
   * through the webhook path, the cursor moved with it; skipped when `entities` limits the
   * pass), then Paddle's lists: unknown objects mirrored, rows older than Paddle's object
   * repaired, lost links made, rule breakers parked; `dryRun`: the report only (no event,
   * no cursor stored). Needs Paddle.
   */
  async reconcile(
    opts: { dryRun?: boolean; entities?: readonly EntityName[] } = {},
  ): Promise<ReconcileReport> {
    if (!this.paddle)
      throw claError(
        'CLA_ERR_PADDLE_NOT_CONFIGURED',
        'Paddle is not configured: nothing to reconcile',
      )
    return reconcile(this.ctx, opts, this)
  }

  /** Where the next reconcile pass reads Paddle's event stream from; null before the first. */
  eventCursor(): EventCursor | null {
    return eventCursor(this.db)
  }

  /** Re-syncs one object by its Paddle id (read from Paddle, applied as a snapshot). */
  async resync(paddleId: string): Promise<Awaited<ReturnType<typeof resyncOne>>> {
    if (!this.paddle)
      throw claError('CLA_ERR_PADDLE_NOT_CONFIGURED', 'Paddle is not configured: nothing to read')
    return resyncOne(this.ctx, paddleId)
  }

  /**
   * Runs a reconcile pass `intervalMs` (default {@link RECONCILE_INTERVAL_MS}, an hour)
   * after this call, and again `intervalMs` after each pass ends (never two at once), on
   * this instance's clock; stopped by stop(). Nothing without Paddle or with 0.
   */
  startReconcile(
    intervalMs: number = RECONCILE_INTERVAL_MS,
    onReport?: (r: ReconcileReport) => void,
    onError?: (err: unknown) => void,
  ): void {
    if (this.reconcileTimer !== undefined || !this.paddle || intervalMs <= 0) return
    const arm = (): void => {
      this.reconcileTimer = this.clock.setTimeout(() => {
        this.reconcileRun = this.reconcile().then(
          (r) => done(() => onReport?.(r)),
          (err) => done(() => onError?.(err)),
        )
      }, intervalMs)
    }
    // the next pass is armed before the report is given (not when stopped meanwhile)
    const done = (tell: () => void): void => {
      this.reconcileRun = undefined
      if (this.reconcileTimer !== undefined) arm()
      try {
        tell()
      } catch (err) {
        onError?.(err)
      }
    }
    arm()
  }

  /**
   * What `core serve` runs for billing in the background: the retry worker (every
   * `retry.intervalMs`) and a reconcile pass every `reconcileIntervalMs` (default an
   * hour; 0: none). Stopped by stop().
   */
  startWorkers(opts: BillingWorkersOptions = {}): void {
    this.startRetryWorker(opts.onRetryReport, (err) => opts.onError?.(err, 'retry'))
    this.startReconcile(
      opts.reconcileIntervalMs ?? RECONCILE_INTERVAL_MS,
      opts.onReconcileReport,
      (err) => opts.onError?.(err, 'reconcile'),
    )
  }

  // --- plans (ours only, never at Paddle) -----------------------------------------------
  /** Creates a plan: a name, the recurring prices that sell it, its limits (plans.ts). */
  createPlan(input: unknown, opts: { actor?: string } = {}): Plan {
    return createPlan(this.db, input, { ...opts, clock: this.clock })
  }

  /** Changes a plan's name, prices, limits or status (archived: sold no more). */
  updatePlan(id: string, patch: unknown, opts: { actor?: string } = {}): Plan {
    return updatePlan(this.db, id, patch, { ...opts, clock: this.clock })
  }

  /** One plan with its price ids, or undefined. */
  getPlan(id: string): Plan | undefined {
    return getPlan(this.db, id)
  }

  /** Plans by name; archived ones only with `archived: true`. */
  listPlans(opts: { archived?: boolean } = {}): Plan[] {
    return listPlans(this.db, opts)
  }

  /** A subscription's limits from its items' plans; undefined when it does not exist. */
  entitlements(subscriptionId: string): Entitlements | undefined {
    return entitlementsOf(this.db, subscriptionId)
  }

  // --- queries ---------------------------------------------------------------------------
  /** The whole customer hierarchy (MSPs with their customers and departments). */
  customerTree(): CustomerNode[] {
    return customerTree(this.db)
  }

  /** Revenue by discount (the MSP margins) and currency, net of adjustments, optionally in a period (reports.ts). */
  revenueByDiscount(opts: RevenueOptions = {}): RevenueRow[] {
    return revenueByDiscount(this.db, opts)
  }

  // --- webhooks (called by webhooks.ts) ---------------------------------------------------
  /**
   * Applies a Paddle snapshot to our row (snapshots.ts): linked, applied when newer,
   * inserted as a mirror, stale, or parked (the answer says why). Call inside a transaction.
   * @internal the webhook and reconcile paths' step; embedders deliver Paddle's events
   * through the core app's webhook route (server/routes/paddle-webhook.ts).
   */
  applySnapshot(
    spec: EntitySpec,
    obj: PaddleObj,
    occurredAt: string,
  ): 'applied' | 'linked' | 'stale' | 'inserted' | ParkedSnapshot {
    return applySnapshot(this.ctx, spec, obj, occurredAt)
  }
}
