// The second half of the dual write: bringing a pending row to Paddle. One leased attempt
// per row: never two at once, even across processes; a row tried before is first looked
// for at Paddle by our id, so a lost answer never makes a second object; a create whose
// outcome is unknown (no answer) is never sent again while Paddle may still apply it
// (settling); Paddle's failures are recorded on the row (pending with backoff, or failed
// when a 4xx can never succeed), never thrown. Which entity it is matters only through its
// description's hooks.
import { randomBytes } from 'node:crypto'
import { claError, isClavitorError, ClavitorError } from '../errors.js'
import { load, nowMicros, type BillingContext } from './context.js'
import { ENTITIES, type EntityName, type EntitySpec, type PaddleObj, type Row } from './entities.js'
import type { PushCtx } from './entity-spec.js'
import { CUSTOM_ID_KEY } from './ids.js'
import { paddleDetails, type PaddleClient } from './paddle-client.js'

/** Paddle's 4xx that may succeed later (a key to fix, a timeout), so the row stays pending. */
const NEVER_PERMANENT = new Set([401, 403, 408, 425])

/**
 * A create sent to Paddle whose outcome we do not know yet is marked in billing_leases
 * under `unsettled:<entity>:<our id>` (next to the push leases `<entity>:<our id>`): set
 * before the POST leaves (until the request timeout + settleMs, so a crash mid-request
 * leaves it), removed on an answer that says what happened, and moved to settleMs after
 * we gave up when no answer came. While it holds, a push of that row only looks for the
 * object at Paddle (adopting it when found) and never POSTs again: a lookup that finds
 * nothing proves nothing while Paddle may still be working on the request.
 */
export const unsettledKey = (entity: EntityName, id: string): string => `unsettled:${entity}:${id}`

export class Pusher {
  /** Identifies this instance's leases in billing_leases. */
  private readonly holder = `${process.pid}-${randomBytes(6).toString('hex')}`

  constructor(private readonly ctx: BillingContext) {}

  /** What an entity's push hooks may use (entity-spec.ts). */
  private pushCtx(paddle: PaddleClient): PushCtx {
    return {
      paddle,
      map: this.ctx.map,
      load: (spec, id) => load(this.ctx, spec, id),
      push: (entity, id) => this.push(entity, id),
      merge: (spec, row, obj, clear) => this.merge(spec, row, obj, clear),
    }
  }

  /**
   * One attempt to bring a pending row to Paddle. Never throws for Paddle's failures: they
   * are recorded on the row. A row being pushed (by this or another process) is skipped:
   * a lease in billing_leases, taken over only once expired (a crashed holder). Returns
   * false when the row was leased elsewhere.
   */
  async push(entity: EntityName, id: string): Promise<boolean> {
    const key = `${entity}:${id}`
    const now = nowMicros(this.ctx)
    const leaseUs = (this.ctx.paddle ? this.ctx.paddle.timeoutMs * 10 : 0) * 1000 + 300_000_000
    const claimed = this.ctx.db
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
      this.ctx.db
        .prepare('DELETE FROM billing_leases WHERE key = ? AND holder = ?')
        .run(key, this.holder)
    }
  }

  private async pushRow(spec: EntitySpec, id: string): Promise<void> {
    const row = load(this.ctx, spec, id)
    if (!row || row.pending_since == null || row.failed_at != null) return
    if (spec.billedThrough?.(row) != null) {
      // no object of its own at Paddle (a department billed through its parent's
      // customer): nothing to send, in sync as written
      this.ctx.db
        .prepare(
          `UPDATE ${spec.table} SET pending_since = NULL, attempts = 0, last_error = NULL, next_attempt_at = NULL
           WHERE id = ? AND updated_at = ?`,
        )
        .run(id, row.updated_at)
      return
    }
    if (!this.ctx.paddle) {
      this.ctx.db
        .prepare(`UPDATE ${spec.table} SET last_error = ? WHERE id = ?`)
        .run('CLA_ERR_PADDLE_NOT_CONFIGURED: Paddle is not configured; the write waits', id)
      return
    }
    const paddle = this.ctx.paddle
    const triedBefore = Number(row.attempts) > 0
    this.ctx.db.prepare(`UPDATE ${spec.table} SET attempts = attempts + 1 WHERE id = ?`).run(id)
    row.attempts = Number(row.attempts) + 1
    try {
      if (spec.pushNew && !row.paddle_id) {
        await spec.pushNew(this.pushCtx(paddle), row)
        return
      }
      let obj: PaddleObj
      if (!row.paddle_id) {
        const collection = spec.collection(row, this.ctx.map)
        if (!collection)
          throw claError('CLA_ERR_INTERNAL', `${spec.name} cannot be created at Paddle directly`)
        const key = unsettledKey(spec.name, id)
        const settlingUntil = this.unsettledUntil(key)
        const settling = settlingUntil > nowMicros(this.ctx)
        const found =
          triedBefore || settling ? await this.findByOurId(spec, row, collection) : undefined
        if (found) {
          // An earlier attempt did reach Paddle (its answer was lost): never create a second.
          obj =
            spec.adoptAsIs || spec.immutable
              ? found
              : (
                  await paddle.patch<PaddleObj>(
                    spec.item(row, this.ctx.map, found.id),
                    spec.toPaddle(row, this.ctx.map, 'update'),
                  )
                ).data
        } else if (settling) {
          throw claError(
            'CLA_ERR_BILLING_UNSETTLED',
            `an earlier create of ${spec.name} ${id} got no answer and Paddle may still apply it; not found at Paddle yet, not sent again before ${new Date(settlingUntil / 1000).toISOString()}`,
            { details: { entity: spec.name, id, until: settlingUntil } },
          )
        } else {
          const body = spec.toPaddle(row, this.ctx.map, 'create')
          this.setUnsettled(key, this.ctx.clock.now() + paddle.timeoutMs + this.ctx.retry.settleMs)
          try {
            obj = (await paddle.post<PaddleObj>(collection, body)).data
          } catch (err) {
            if (paddleDetails(err)?.unknownOutcome)
              this.setUnsettled(key, this.ctx.clock.now() + this.ctx.retry.settleMs)
            else this.clearUnsettled(key)
            if (!spec.recoverCreate) throw err
            obj = await spec.recoverCreate(this.pushCtx(paddle), row, err)
          }
        }
        this.clearUnsettled(key)
      } else if (spec.immutable) {
        obj = (await paddle.get<PaddleObj>(spec.item(row, this.ctx.map, String(row.paddle_id))))
          .data
      } else {
        obj =
          (await spec.pushChange?.(this.pushCtx(paddle), row)) ??
          (
            await paddle.patch<PaddleObj>(
              spec.item(row, this.ctx.map, String(row.paddle_id)),
              spec.toPaddle(row, this.ctx.map, 'update'),
            )
          ).data
      }
      this.merge(spec, row, obj, true)
      await spec.afterPush?.(this.pushCtx(paddle), row)
    } catch (err) {
      this.recordFailure(spec, row, err)
    }
  }

  /** µs epoch until which a create of this row may still land at Paddle (0: none). */
  private unsettledUntil(key: string): number {
    const r = this.ctx.db.prepare('SELECT until FROM billing_leases WHERE key = ?').get(key) as
      { until: number } | undefined
    return r?.until ?? 0
  }

  private setUnsettled(key: string, untilMs: number): void {
    this.ctx.db
      .prepare(
        `INSERT INTO billing_leases (key, holder, until) VALUES (?, ?, ?)
         ON CONFLICT (key) DO UPDATE SET holder = excluded.holder, until = excluded.until`,
      )
      .run(key, this.holder, untilMs * 1000)
  }

  private clearUnsettled(key: string): void {
    this.ctx.db.prepare('DELETE FROM billing_leases WHERE key = ?').run(key)
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
      ...spec.findQuery?.(row, this.ctx.map),
    }
    if (spec.findStatus) query.status = spec.findStatus
    const oldest = Number(row.created_at) / 1000 - 3_600_000 // our row's time minus an hour of clock skew
    let pages = 0
    for await (const page of this.ctx.paddle!.pages(collection, query)) {
      for (const o of page) {
        if (spec.matches) {
          if (spec.matches(row, o, this.ctx.map)) return o
          continue
        }
        const cd = o.custom_data as Record<string, unknown> | null | undefined
        if (cd && cd[CUSTOM_ID_KEY] === row.id) return o
      }
      const last = page[page.length - 1]
      const lastAt =
        last && typeof last.created_at === 'string' ? Date.parse(last.created_at) : Number.NaN
      if (++pages >= this.ctx.retry.findPages || (!Number.isNaN(lastAt) && lastAt < oldest)) break
    }
    return undefined
  }

  /**
   * Merges Paddle's answer into our row: its id, Paddle-owned columns, raw. Clears the
   * pending state when `clear` and the row did not change since it was read.
   */
  merge(spec: EntitySpec, row: Row, obj: PaddleObj, clear: boolean): void {
    const mapped = spec.fromPaddle(obj, this.ctx.map)
    const cols: Record<string, unknown> = {}
    for (const k of spec.paddleOwned) if (k in mapped) cols[k] = mapped[k]
    cols.paddle_id = obj.id
    cols.raw = JSON.stringify(obj)
    this.ctx.db
      .transaction(() => {
        const cur = load(this.ctx, spec, row.id)
        if (!cur) return
        const other = this.ctx.db
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
        const changing = cur.pending_change != null
        if (changing) for (const k of spec.heldWhileChanging ?? []) delete cols[k]
        const keys = Object.keys(cols)
        this.ctx.db
          .prepare(
            `UPDATE ${spec.table} SET ${keys.map((k) => `${k} = @${k}`).join(', ')}
             ${clear && unchanged && !changing ? ', pending_since = NULL, attempts = 0, last_error = NULL, next_attempt_at = NULL, failed_at = NULL' : ''}
             WHERE id = @__id`,
          )
          .run({ ...cols, __id: row.id })
        if (!changing) spec.afterMerge?.(this.ctx.db, cur, obj, this.ctx.map)
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
      this.ctx.retry.maxDelayMs,
      this.ctx.retry.baseDelayMs * 2 ** Math.min(attempts - 1, 20),
    )
    if (isClavitorError(err, 'CLA_ERR_PADDLE_RATE_LIMITED'))
      delay = Math.max(delay, (d?.retryAfterS ?? 60) * 1000)
    // a create that may still land: the next attempt not before it has settled
    const settling = this.unsettledUntil(unsettledKey(spec.name, row.id)) / 1000
    delay = Math.max(delay, settling - this.ctx.clock.now())
    const code = err instanceof ClavitorError ? err.code : 'CLA_ERR_INTERNAL'
    const message = `${code}: ${(err as Error)?.message ?? String(err)}`
    const now = this.ctx.clock.now()
    this.ctx.db
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
}
