// The dual-write layer: we lead, Paddle follows. One mechanism for every mirrored entity,
// driven by the descriptions in entities.ts:
//
//   JSON in → validate (TypeBox + entity checks) → write our row with pending_since = now
//   → call Paddle with our id in custom_data → merge Paddle's answer → clear pending_since.
//
// If Paddle fails, our write stands and is returned; the row keeps pending_since, attempts
// and last_error (a 4xx that can never succeed sets failed_at instead). The retry worker
// takes rows pending longer than `minAgeMs`, with per-row backoff, and never creates a
// second object at Paddle: a row that was tried before is first looked for by our id in
// custom_data (and customers by 409 customer_already_exists). See docs/billing.md.
import type { AuditKind } from '../audit/kinds.js'
import { randomBytes } from 'node:crypto'
import { Value } from '@sinclair/typebox/value'
import type { Db } from '../db/open.js'
import { claError, isClavitorError, ClavitorError } from '../errors.js'
import { systemClock, rfc3339Micros, type Clock } from './clock.js'
import {
  ENTITIES,
  ENTITY_NAMES,
  entitySpec,
  parseJson,
  type EntityName,
  type EntitySpec,
  type MapCtx,
  type PaddleObj,
  type Row,
} from './entities.js'
import type { PushCtx, WriteCtx } from './entity-spec.js'
import { CUSTOM_ID_KEY, newId } from './ids.js'
import { paddleDetails, type PaddleClient } from './paddle-client.js'

/** A webhook snapshot not applied because it breaks a rule (webhooks.ts parks its event). */
export interface ParkedSnapshot {
  /** Stable reason: paddle_events.outcome is `parked: <reason>`. */
  parked: string
  /** What is wrong, for the alarm (audit row and log). */
  message: string
}

export interface AuditSink {
  append(ev: {
    kind: AuditKind
    actor: string
    outcome: string
    reason?: string
    data?: unknown
    route?: string
    at?: number
  }): unknown
}

export interface RetryOptions {
  /** Rows pending for less than this are left to the inline call. Default 300000 (5 min). */
  minAgeMs?: number
  /** First backoff delay after a failure. Default 30000; doubles per attempt. */
  baseDelayMs?: number
  /** Backoff cap. Default 3600000 (1 h). */
  maxDelayMs?: number
  /** Rows per pass. Default 100. */
  batch?: number
  /** Worker interval. Default 30000. */
  intervalMs?: number
  /** Pages of a list scanned when looking for our id before re-creating. Default 5. */
  findPages?: number
}

export interface WebhookOptions {
  /** Destination secrets; several during rotation (any may match). */
  secrets?: string[]
  /** Accepted |now − ts| in seconds, both directions. Default 10. */
  toleranceS?: number
}

export interface BillingOptions {
  db: Db
  /** Null/undefined: Paddle not configured; writes stay pending with a note. */
  paddle?: PaddleClient | null
  clock?: Clock
  audit?: AuditSink
  retry?: RetryOptions
  webhook?: WebhookOptions
}

export interface PendingRow {
  entity: EntityName
  id: string
  paddle_id: string | null
  state: 'pending' | 'failed'
  pending_since: number | null
  attempts: number
  last_error: string | null
  failed_at: number | null
  next_attempt_at: number | null
}

export interface RetryReport {
  /** Rows tried in this pass. */
  attempted: number
  /** Rows now in sync. */
  synced: number
  /** Rows still pending (will be retried). */
  pending: number
  /** Rows marked failed in this pass (a 4xx that will never succeed). */
  failed: number
  /** Set when Paddle rate-limited us; the pass stopped early. µs epoch. */
  rateLimitedUntil?: number
}

export interface CustomerNode {
  id: string
  paddle_id: string | null
  level: number
  name: string | null
  email: string
  status: string
  pending: boolean
  failed: boolean
  discount_id: string | null
  children: CustomerNode[]
}

export interface RevenueRow {
  discount_id: string | null
  msp_id: string | null
  currency_code: string
  /** Sum of transaction totals, minor units, as a decimal string. */
  revenue: string
  transactions: number
}

export type PublicRow = Record<string, unknown> & {
  id: string
  paddle_id: string | null
  state: 'synced' | 'pending' | 'failed'
  pending_since: number | null
  attempts: number
  last_error: string | null
  failed_at: number | null
}

const BILLED_STATUSES = ['billed', 'paid', 'completed', 'past_due']
const PADDLE_ID = /^(ctm|add|biz|dsc|pro|pri|sub|txn|adj)_/
const NEVER_PERMANENT = new Set([401, 403, 408, 425])

export class Billing {
  readonly db: Db
  readonly paddle: PaddleClient | null
  readonly clock: Clock
  readonly audit: AuditSink | undefined
  readonly retryOptions: Required<RetryOptions>
  readonly webhookOptions: { secrets: string[]; toleranceS: number }
  /** Identifies this instance's leases in billing_leases. */
  private readonly holder = `${process.pid}-${randomBytes(6).toString('hex')}`
  private timer: NodeJS.Timeout | undefined
  private running: Promise<unknown> | undefined
  private readonly ctx: MapCtx

  constructor(opts: BillingOptions) {
    this.db = opts.db
    this.paddle = opts.paddle ?? null
    this.clock = opts.clock ?? systemClock
    this.audit = opts.audit
    this.retryOptions = {
      minAgeMs: opts.retry?.minAgeMs ?? 300_000,
      baseDelayMs: opts.retry?.baseDelayMs ?? 30_000,
      maxDelayMs: opts.retry?.maxDelayMs ?? 3_600_000,
      batch: opts.retry?.batch ?? 100,
      intervalMs: opts.retry?.intervalMs ?? 30_000,
      findPages: opts.retry?.findPages ?? 5,
    }
    this.webhookOptions = {
      secrets: (opts.webhook?.secrets ?? []).filter(Boolean),
      toleranceS: opts.webhook?.toleranceS ?? 10,
    }
    const db = this.db
    this.ctx = {
      db,
      paddleIdOf(entity, ourId) {
        const r = db
          .prepare(`SELECT paddle_id FROM ${ENTITIES[entity].table} WHERE id = ?`)
          .get(ourId) as { paddle_id: string | null } | undefined
        if (!r)
          throw claError('CLA_ERR_NOT_FOUND', `${entity} ${ourId} does not exist`, {
            details: { entity, id: ourId },
          })
        if (!r.paddle_id) {
          throw claError(
            'CLA_ERR_BILLING_DEPENDENCY_PENDING',
            `waiting for ${entity} ${ourId} to reach Paddle first`,
            {
              details: { entity, id: ourId },
            },
          )
        }
        return r.paddle_id
      },
      ourIdOf(entity, paddleId) {
        if (!paddleId) return null
        const r = db
          .prepare(`SELECT id FROM ${ENTITIES[entity].table} WHERE paddle_id = ?`)
          .get(paddleId) as { id: string } | undefined
        return r?.id ?? paddleId
      },
    }
  }

  /** What an entity's insertNew hook may use (entity-spec.ts). */
  private get writeCtx(): WriteCtx {
    return {
      db: this.db,
      nowMs: () => this.clock.now(),
      insert: (spec, id, cols, now) => this.insert(spec, id, cols, now),
    }
  }

  /** What an entity's push hooks may use (entity-spec.ts). */
  private pushCtx(paddle: PaddleClient): PushCtx {
    return {
      paddle,
      map: this.ctx,
      load: (spec, id) => this.load(spec, id),
      push: (entity, id) => this.push(entity, id),
      merge: (spec, row, obj, clear) => this.merge(spec, row, obj, clear),
    }
  }

  private nowUs(): number {
    return this.clock.now() * 1000
  }

  // --- reading ---------------------------------------------------------------------------
  private load(spec: EntitySpec, id: string): Row | undefined {
    return this.db.prepare(`SELECT * FROM ${spec.table} WHERE id = ?`).get(id) as Row | undefined
  }

  private present(spec: EntitySpec, row: Row): PublicRow {
    const out: Record<string, unknown> = { ...row }
    for (const c of [...spec.json, 'raw']) if (c in out) out[c] = parseJson(out[c])
    for (const c of spec.bool) if (c in out) out[c] = Boolean(out[c])
    out.state = row.failed_at != null ? 'failed' : row.pending_since != null ? 'pending' : 'synced'
    if (spec.present) Object.assign(out, spec.present(this.db, row))
    return out as PublicRow
  }

  /** One row as the API shows it (JSON columns parsed, `state`: synced | pending | failed). */
  get(entity: string, id: string): PublicRow {
    const spec = entitySpec(entity)
    const row = this.load(spec, id)
    if (!row)
      throw claError('CLA_ERR_NOT_FOUND', `${entity} ${id} does not exist`, {
        details: { entity, id },
      })
    return this.present(spec, row)
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
    const spec = entitySpec(entity)
    const where: string[] = []
    const args: unknown[] = []
    if (opts.after) {
      where.push('id < ?')
      args.push(opts.after)
    }
    if (opts.customer_id && spec.customerColumn) {
      where.push(`${spec.customerColumn} = ?`)
      args.push(opts.customer_id)
    }
    if (opts.state === 'failed') where.push('failed_at IS NOT NULL')
    if (opts.state === 'pending') where.push('pending_since IS NOT NULL AND failed_at IS NULL')
    if (opts.state === 'synced') where.push('pending_since IS NULL AND failed_at IS NULL')
    const limit = Math.min(Math.max(1, opts.limit ?? 100), 1000)
    const rows = this.db
      .prepare(
        `SELECT * FROM ${spec.table} ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id DESC LIMIT ${limit}`,
      )
      .all(...args) as Row[]
    return rows.map((r) => this.present(spec, r))
  }

  /** Every row not yet in sync with Paddle: pending (will be retried) and failed (will not). */
  pending(): PendingRow[] {
    const out: PendingRow[] = []
    for (const name of ENTITY_NAMES) {
      const rows = this.db
        .prepare(
          `SELECT id, paddle_id, pending_since, attempts, last_error, failed_at, next_attempt_at FROM ${ENTITIES[name].table}
           WHERE pending_since IS NOT NULL OR failed_at IS NOT NULL ORDER BY pending_since`,
        )
        .all() as Array<Omit<PendingRow, 'entity' | 'state'>>
      for (const r of rows)
        out.push({ entity: name, ...r, state: r.failed_at != null ? 'failed' : 'pending' })
    }
    return out
  }

  // --- writing ---------------------------------------------------------------------------
  private validate(
    spec: EntitySpec,
    schema: EntitySpec['create'],
    input: unknown,
    what: string,
  ): Record<string, unknown> {
    if (!Value.Check(schema, input)) {
      const errors = [...Value.Errors(schema, input)]
        .slice(0, 10)
        // a field's own description says what to fix better than "Expected string to match …"
        .map((e) => ({
          path: e.path || '/',
          message:
            typeof e.schema.description === 'string' && e.value !== undefined
              ? e.schema.description
              : e.message,
        }))
      const first = errors[0]
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        `${spec.name} ${what}: ${first ? `${first.path} ${first.message}` : 'invalid'}`,
        {
          details: { entity: spec.name, errors },
        },
      )
    }
    return structuredClone(input) as Record<string, unknown>
  }

  private toColumns(spec: EntitySpec, input: Record<string, unknown>): Record<string, unknown> {
    const cols: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(input)) {
      if (spec.json.includes(k)) cols[k] = v === null ? null : JSON.stringify(v)
      else if (spec.bool.includes(k)) cols[k] = v ? 1 : 0
      else cols[k] = v
    }
    return cols
  }

  private sqlError(err: unknown): never {
    const msg = (err as Error)?.message ?? ''
    if (isClavitorError(err)) throw err
    if (msg.includes('CLA_HIERARCHY') || msg.includes('CHECK constraint failed: level')) {
      throw claError('CLA_ERR_BILLING_HIERARCHY', msg.replace(/^.*CLA_HIERARCHY: /, ''), {
        cause: err,
      })
    }
    if (msg.includes('UNIQUE constraint failed: discounts.msp_id')) {
      throw claError('CLA_ERR_BILLING_CONFLICT', 'this MSP has a discount already; one per MSP', {
        cause: err,
      })
    }
    throw err
  }

  /**
   * Validates `input`, writes our row (pending), pushes it to Paddle and returns the row.
   * Paddle failing does not fail the call: the row comes back with state "pending" (or
   * "failed") and last_error. Bad input throws a typed error and writes nothing.
   */
  async create(entity: string, input: unknown): Promise<PublicRow> {
    const spec = entitySpec(entity)
    const cols = this.toColumns(spec, this.validate(spec, spec.create, input, 'create'))
    const now = this.nowUs()
    const id = newId(spec.prefix, this.clock.now())
    let pushed: { entity: EntityName; id: string } = { entity: spec.name, id }
    try {
      this.db
        .transaction(() => {
          spec.prepare?.(this.db, cols, undefined)
          if (spec.insertNew) pushed = spec.insertNew(this.writeCtx, id, cols, now)
          else this.insert(spec, id, cols, now)
        })
        .immediate()
    } catch (err) {
      this.sqlError(err)
    }
    await this.push(pushed.entity, pushed.id)
    return this.get(spec.name, id)
  }

  private insert(spec: EntitySpec, id: string, cols: Record<string, unknown>, now: number): void {
    const all: Record<string, unknown> = {
      ...cols,
      id,
      created_at: now,
      updated_at: now,
      pending_since: now,
      attempts: 0,
    }
    const keys = Object.keys(all)
    this.db
      .prepare(
        `INSERT INTO ${spec.table} (${keys.join(', ')}) VALUES (${keys.map((k) => '@' + k).join(', ')})`,
      )
      .run(all)
  }

  /** Validates a partial change, writes it (pending) and pushes it to Paddle. */
  async update(entity: string, id: string, patch: unknown): Promise<PublicRow> {
    const spec = entitySpec(entity)
    if (spec.immutable) {
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        `${spec.name} cannot be changed once made (Paddle has no PATCH for them)`,
        {
          details: { entity: spec.name },
        },
      )
    }
    const cols = this.toColumns(spec, this.validate(spec, spec.update, patch, 'update'))
    try {
      this.db
        .transaction(() => {
          const existing = this.load(spec, id)
          if (!existing)
            throw claError('CLA_ERR_NOT_FOUND', `${entity} ${id} does not exist`, {
              details: { entity, id },
            })
          spec.prepare?.(this.db, cols, existing)
          const now = Math.max(this.nowUs(), Number(existing.updated_at) + 1)
          const keys = Object.keys(cols)
          this.db
            .prepare(
              `UPDATE ${spec.table} SET ${keys.map((k) => `${k} = @${k}`).join(', ')}${keys.length ? ',' : ''}
               updated_at = @__now, pending_since = COALESCE(pending_since, @__now), failed_at = NULL, next_attempt_at = NULL
               WHERE id = @__id`,
            )
            .run({ ...cols, __now: now, __id: id })
        })
        .immediate()
    } catch (err) {
      this.sqlError(err)
    }
    await this.push(spec.name, id)
    return this.get(spec.name, id)
  }

  // --- pushing to Paddle -----------------------------------------------------------------
  /**
   * One attempt to bring a pending row to Paddle. Never throws for Paddle's failures: they
   * are recorded on the row. A row being pushed (by this or another process) is skipped:
   * a lease in billing_leases, taken over only once expired (a crashed holder). Returns
   * false when the row was leased elsewhere.
   */
  async push(entity: EntityName, id: string): Promise<boolean> {
    const key = `${entity}:${id}`
    const now = this.nowUs()
    const leaseUs = (this.paddle ? this.paddle.timeoutMs * 10 : 0) * 1000 + 300_000_000
    const claimed = this.db
      .prepare(
        `INSERT INTO billing_leases (key, holder, until) VALUES (?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, until = excluded.until WHERE billing_leases.until <= ?`,
      )
      .run(key, this.holder, now + leaseUs, now)
    if (claimed.changes === 0) return false
    try {
      await this.pushRow(ENTITIES[entity], id)
      return true
    } finally {
      this.db
        .prepare('DELETE FROM billing_leases WHERE key = ? AND holder = ?')
        .run(key, this.holder)
    }
  }

  private async pushRow(spec: EntitySpec, id: string): Promise<void> {
    const row = this.load(spec, id)
    if (!row || row.pending_since == null || row.failed_at != null) return
    if (!this.paddle) {
      this.db
        .prepare(`UPDATE ${spec.table} SET last_error = ? WHERE id = ?`)
        .run('CLA_ERR_PADDLE_NOT_CONFIGURED: Paddle is not configured; the write waits', id)
      return
    }
    const paddle = this.paddle
    const triedBefore = Number(row.attempts) > 0
    this.db.prepare(`UPDATE ${spec.table} SET attempts = attempts + 1 WHERE id = ?`).run(id)
    row.attempts = Number(row.attempts) + 1
    try {
      if (spec.pushNew && !row.paddle_id) {
        await spec.pushNew(this.pushCtx(paddle), row)
        return
      }
      let obj: PaddleObj
      if (!row.paddle_id) {
        const collection = spec.collection(row, this.ctx)
        if (!collection)
          throw claError('CLA_ERR_INTERNAL', `${spec.name} cannot be created at Paddle directly`)
        const found = triedBefore ? await this.findByOurId(spec, row, collection) : undefined
        if (found) {
          // An earlier attempt did reach Paddle (its answer was lost): never create a second.
          obj =
            spec.adoptAsIs || spec.immutable
              ? found
              : (
                  await paddle.patch<PaddleObj>(
                    spec.item(row, this.ctx, found.id),
                    spec.toPaddle(row, this.ctx, 'update'),
                  )
                ).data
        } else {
          try {
            obj = (await paddle.post<PaddleObj>(collection, spec.toPaddle(row, this.ctx, 'create')))
              .data
          } catch (err) {
            if (!spec.recoverCreate) throw err
            obj = await spec.recoverCreate(this.pushCtx(paddle), row, err)
          }
        }
      } else if (spec.immutable) {
        obj = (await paddle.get<PaddleObj>(spec.item(row, this.ctx, String(row.paddle_id)))).data
      } else {
        obj = (
          await paddle.patch<PaddleObj>(
            spec.item(row, this.ctx, String(row.paddle_id)),
            spec.toPaddle(row, this.ctx, 'update'),
          )
        ).data
      }
      this.merge(spec, row, obj, true)
      await spec.afterPush?.(this.pushCtx(paddle), row)
    } catch (err) {
      this.recordFailure(spec, row, err)
    }
  }

  /** Looks for our id in custom_data among recent objects (id[DESC], following `next`). */
  private async findByOurId(
    spec: EntitySpec,
    row: Row,
    collection: string,
  ): Promise<PaddleObj | undefined> {
    const query: Record<string, string> = {
      order_by: 'id[DESC]',
      per_page: String(spec.perPage),
      ...spec.findQuery?.(row, this.ctx),
    }
    if (spec.findStatus) query.status = spec.findStatus
    const oldest = Number(row.created_at) / 1000 - 3_600_000 // our row's time minus an hour of clock skew
    let pages = 0
    for await (const page of this.paddle!.pages(collection, query)) {
      for (const o of page) {
        if (spec.matches) {
          if (spec.matches(row, o, this.ctx)) return o
          continue
        }
        const cd = o.custom_data as Record<string, unknown> | null | undefined
        if (cd && cd[CUSTOM_ID_KEY] === row.id) return o
      }
      const last = page[page.length - 1]
      const lastAt =
        last && typeof last.created_at === 'string' ? Date.parse(last.created_at) : Number.NaN
      if (++pages >= this.retryOptions.findPages || (!Number.isNaN(lastAt) && lastAt < oldest))
        break
    }
    return undefined
  }

  /**
   * Merges Paddle's answer into our row: its id, Paddle-owned columns, raw. Clears the
   * pending state when `clear` and the row did not change since it was read.
   */
  private merge(spec: EntitySpec, row: Row, obj: PaddleObj, clear: boolean): void {
    const mapped = spec.fromPaddle(obj, this.ctx)
    const cols: Record<string, unknown> = {}
    for (const k of spec.paddleOwned) if (k in mapped) cols[k] = mapped[k]
    cols.paddle_id = obj.id
    cols.raw = JSON.stringify(obj)
    const keys = Object.keys(cols)
    this.db
      .transaction(() => {
        const cur = this.load(spec, row.id)
        if (!cur) return
        const other = this.db
          .prepare(`SELECT id FROM ${spec.table} WHERE paddle_id = ? AND id <> ?`)
          .get(obj.id, row.id) as { id: string } | undefined
        if (other) {
          throw claError(
            'CLA_ERR_BILLING_CONFLICT',
            `Paddle's ${obj.id} is already mirrored here as ${other.id} (made at Paddle directly); use that row`,
            { details: { paddle_id: obj.id, id: other.id } },
          )
        }
        const unchanged = cur.updated_at === row.updated_at
        this.db
          .prepare(
            `UPDATE ${spec.table} SET ${keys.map((k) => `${k} = @${k}`).join(', ')}
             ${clear && unchanged ? ', pending_since = NULL, attempts = 0, last_error = NULL, next_attempt_at = NULL, failed_at = NULL' : ''}
             WHERE id = @__id`,
          )
          .run({ ...cols, __id: row.id })
      })
      .immediate()
  }

  private recordFailure(spec: EntitySpec, row: Row, err: unknown): void {
    const d = paddleDetails(err)
    let permanent = false
    if (isClavitorError(err, 'CLA_ERR_PADDLE_REJECTED'))
      permanent = !NEVER_PERMANENT.has(d?.status ?? 0)
    if (
      isClavitorError(err, 'CLA_ERR_BILLING_CONFLICT') ||
      isClavitorError(err, 'CLA_ERR_NOT_FOUND')
    )
      permanent = true
    const attempts = Math.max(1, Number(row.attempts))
    let delay = Math.min(
      this.retryOptions.maxDelayMs,
      this.retryOptions.baseDelayMs * 2 ** Math.min(attempts - 1, 20),
    )
    if (isClavitorError(err, 'CLA_ERR_PADDLE_RATE_LIMITED'))
      delay = Math.max(delay, (d?.retryAfterS ?? 60) * 1000)
    const code = err instanceof ClavitorError ? err.code : 'CLA_ERR_INTERNAL'
    const message = `${code}: ${(err as Error)?.message ?? String(err)}`
    const now = this.clock.now()
    this.db
      .prepare(
        `UPDATE ${spec.table} SET last_error = ?, failed_at = ?, next_attempt_at = ? WHERE id = ?`,
      )
      .run(
        message.slice(0, 2000),
        permanent ? now * 1000 : null,
        permanent ? null : (now + delay) * 1000,
        row.id,
      )
  }

  // --- retry worker ----------------------------------------------------------------------
  /**
   * One pass over rows pending longer than minAgeMs whose backoff has passed (`force`:
   * every pending row now, for an operator's `billing retry --once --force`). Failed rows
   * are never retried; an update to the row makes it pending again.
   */
  async retryOnce(opts: { force?: boolean } = {}): Promise<RetryReport> {
    const report: RetryReport = { attempted: 0, synced: 0, pending: 0, failed: 0 }
    const nowUs = opts.force ? Number.MAX_SAFE_INTEGER : this.nowUs()
    const cutoff = opts.force ? Number.MAX_SAFE_INTEGER : nowUs - this.retryOptions.minAgeMs * 1000
    let budget = this.retryOptions.batch
    for (const name of ENTITY_NAMES) {
      const spec = ENTITIES[name]
      const rows = this.db
        .prepare(
          `SELECT id FROM ${spec.table} WHERE pending_since IS NOT NULL AND failed_at IS NULL AND pending_since <= ?
             AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ORDER BY pending_since LIMIT ?`,
        )
        .all(cutoff, nowUs, budget) as Array<{ id: string }>
      for (const { id } of rows) {
        const blocked = this.paddle?.blockedForMs() ?? 0
        if (blocked > 0) {
          report.rateLimitedUntil = (this.clock.now() + blocked) * 1000
          break
        }
        const before = this.load(spec, id)
        if (!before || before.pending_since == null || before.failed_at != null) continue // done meanwhile (a linked subscription)
        if (!(await this.push(name, id))) continue // another process holds the row
        report.attempted += 1
        budget -= 1
        const after = this.load(spec, id)!
        if (after.failed_at != null) report.failed += 1
        else if (after.pending_since == null) report.synced += 1
        else report.pending += 1
      }
      if (report.rateLimitedUntil || budget <= 0) break
    }
    return report
  }

  /** Runs retryOnce every intervalMs in this process (the core's `serve`). */
  startRetryWorker(onReport?: (r: RetryReport) => void, onError?: (err: unknown) => void): void {
    if (this.timer) return
    this.timer = setInterval(() => {
      if (this.running) return
      this.running = this.retryOnce()
        .then((r) => onReport?.(r))
        .catch((err) => onError?.(err))
        .finally(() => {
          this.running = undefined
        })
    }, this.retryOptions.intervalMs)
    this.timer.unref()
  }

  /** Stops the worker and waits for a pass in progress. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    await this.running
  }

  // --- queries ---------------------------------------------------------------------------
  /** The whole customer hierarchy (MSPs with their customers and departments). */
  customerTree(): CustomerNode[] {
    const rows = this.db
      .prepare(
        `SELECT c.id, c.paddle_id, c.level, c.name, c.email, c.status, c.parent_id, c.pending_since, c.failed_at, d.id AS discount_id
         FROM customers c LEFT JOIN discounts d ON d.msp_id = c.id ORDER BY c.level, c.id`,
      )
      .all() as Array<Record<string, unknown>>
    const nodes = new Map<string, CustomerNode>()
    const roots: CustomerNode[] = []
    for (const r of rows) {
      const n: CustomerNode = {
        id: String(r.id),
        paddle_id: (r.paddle_id as string | null) ?? null,
        level: Number(r.level),
        name: (r.name as string | null) ?? null,
        email: String(r.email),
        status: String(r.status),
        pending: r.pending_since != null,
        failed: r.failed_at != null,
        discount_id: (r.discount_id as string | null) ?? null,
        children: [],
      }
      nodes.set(n.id, n)
      const parent = r.parent_id ? nodes.get(String(r.parent_id)) : undefined
      if (parent) parent.children.push(n)
      else roots.push(n)
    }
    return roots
  }

  /** Revenue by discount (the MSP margins): billed/paid/completed transactions' totals, summed exactly. */
  revenueByDiscount(): RevenueRow[] {
    const rows = this.db
      .prepare(
        `SELECT t.discount_id, d.msp_id, t.currency_code, t.total FROM transactions t LEFT JOIN discounts d ON d.id = t.discount_id
         WHERE t.status IN (${BILLED_STATUSES.map(() => '?').join(', ')}) AND t.total IS NOT NULL`,
      )
      .all(...BILLED_STATUSES) as Array<{
      discount_id: string | null
      msp_id: string | null
      currency_code: string
      total: string
    }>
    const sums = new Map<string, RevenueRow & { sum: bigint }>()
    for (const r of rows) {
      if (!/^-?[0-9]+$/.test(r.total)) continue
      const key = `${r.discount_id ?? ''}|${r.currency_code}`
      const cur = sums.get(key) ?? {
        discount_id: r.discount_id,
        msp_id: r.msp_id,
        currency_code: r.currency_code,
        revenue: '0',
        transactions: 0,
        sum: 0n,
      }
      cur.sum += BigInt(r.total)
      cur.transactions += 1
      sums.set(key, cur)
    }
    return [...sums.values()]
      .map(({ sum, ...r }) => ({ ...r, revenue: sum.toString() }))
      .sort(
        (a, b) =>
          String(a.discount_id).localeCompare(String(b.discount_id)) ||
          a.currency_code.localeCompare(b.currency_code),
      )
  }

  // --- webhooks (called by webhooks.ts) ---------------------------------------------------
  /**
   * Applies a Paddle snapshot to our row: found by paddle_id, else by our id in
   * custom_data (linking a row whose create answer was lost), else (subscriptions) by the
   * transaction that made it; unknown objects are inserted as mirrors. Applied only when
   * `occurredAt` (RFC 3339; CLA_ERR_INVALID_INPUT otherwise) is newer than the row's
   * paddle_occurred_at. A snapshot that would change a reference the entity keeps fixed
   * (`webhookFixed`: a subscription's customer) is not applied: the answer says why, for
   * the caller to park the event. Call inside a transaction.
   */
  applySnapshot(
    spec: EntitySpec,
    obj: PaddleObj,
    occurredAt: string,
  ): 'applied' | 'linked' | 'stale' | 'inserted' | ParkedSnapshot {
    const at = rfc3339Micros(occurredAt)
    if (Number.isNaN(at))
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        `occurred_at is not an RFC 3339 timestamp: ${JSON.stringify(occurredAt).slice(0, 80)}`,
      )
    const byPaddle = this.db.prepare(`SELECT * FROM ${spec.table} WHERE paddle_id = ?`)
    let row = byPaddle.get(obj.id) as Row | undefined
    const cd = (obj.custom_data ?? {}) as Record<string, unknown>
    if (!row && typeof cd[CUSTOM_ID_KEY] === 'string') {
      const r = this.load(spec, cd[CUSTOM_ID_KEY])
      if (r && (r.paddle_id == null || r.paddle_id === obj.id)) row = r
    }
    if (!row && spec.snapshotRow) row = spec.snapshotRow(this.db, obj)
    const mapped = spec.fromPaddle(obj, this.ctx)
    const now = this.nowUs()
    if (!row) {
      const cols: Record<string, unknown> = {
        ...mapped,
        paddle_id: obj.id,
        raw: JSON.stringify(obj),
        paddle_occurred_at: occurredAt,
      }
      spec.mirror?.(cols, obj, this.ctx)
      const id = newId(spec.prefix, this.clock.now())
      const all: Record<string, unknown> = {
        ...cols,
        id,
        created_at: now,
        updated_at: now,
        pending_since: null,
        attempts: 0,
      }
      const keys = Object.keys(all)
      this.db
        .prepare(
          `INSERT INTO ${spec.table} (${keys.join(', ')}) VALUES (${keys.map((k) => '@' + k).join(', ')})`,
        )
        .run(all)
      return 'inserted'
    }
    for (const k of spec.webhookFixed ?? []) {
      if (mapped[k] != null && row[k] != null && mapped[k] !== row[k]) {
        return {
          parked: `${k.replace(/_id$/, '')}_changed`,
          message: `${spec.name} ${obj.id}: Paddle names ${k} ${String(obj[k])}, our row ${String(row.id)} has ${String(row[k])}; a webhook never changes it`,
        }
      }
    }
    if (row.paddle_occurred_at) {
      const last = rfc3339Micros(String(row.paddle_occurred_at))
      // A row marked with a non-timestamp (by a build that did not check) has no order to
      // keep: this valid event replaces the mark, and order holds from here on.
      if (!Number.isNaN(last) && last >= at) return 'stale'
    }
    const linking = row.paddle_id == null
    const cols: Record<string, unknown> = {}
    const source = row.pending_since != null ? spec.paddleOwned : Object.keys(mapped)
    for (const k of source) if (k in mapped) cols[k] = mapped[k]
    // Our hierarchy and the references we resolved stay ours when Paddle does not know them.
    for (const k of ['customer_id', 'address_id', 'business_id', 'discount_id', 'product_id']) {
      const v = cols[k]
      if (
        k in cols &&
        row[k] != null &&
        (v == null || (typeof v === 'string' && PADDLE_ID.test(v)))
      )
        delete cols[k]
    }
    if (spec.finalStatuses?.includes(String(row.status)) && cols.status !== undefined)
      cols.status = row.status
    cols.paddle_id = obj.id
    cols.raw = JSON.stringify(obj)
    cols.paddle_occurred_at = occurredAt
    const clear = linking && spec.linkCompletesPush === true
    const keys = Object.keys(cols)
    this.db
      .prepare(
        `UPDATE ${spec.table} SET ${keys.map((k) => `${k} = @${k}`).join(', ')}
         ${clear ? ', pending_since = NULL, attempts = 0, last_error = NULL, next_attempt_at = NULL' : ''} WHERE id = @__id`,
      )
      .run({ ...cols, __id: row.id })
    return linking ? 'linked' : 'applied'
  }
}
