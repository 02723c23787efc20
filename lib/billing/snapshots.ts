// Applying Paddle's snapshots (webhook data) to our rows: which row a snapshot is about,
// whether it is newer than what the row last took, which columns it may change, and the
// mirror rows for objects made at Paddle directly. webhooks.ts verifies and records the
// event, and calls this inside its transaction.
import { claError } from '../errors.js'
import { rfc3339Micros } from './rfc3339.js'
import { load, nowMicros, type BillingContext } from './context.js'
import type { EntitySpec, PaddleObj, Row } from './entities.js'
import { CUSTOM_ID_KEY, newId } from './ids.js'

/** A webhook snapshot not applied because it breaks a rule (webhooks.ts parks its event). */
export interface ParkedSnapshot {
  /** Stable reason: paddle_events.outcome is `parked: <reason>`. */
  parked: string
  /** What is wrong, for the alarm (audit row and log). */
  message: string
}

/** A Paddle id (theirs, not ours): a reference Paddle knows but we have not resolved. */
const PADDLE_ID = /^(ctm|add|biz|dsc|pro|pri|sub|txn|adj)_/

/**
 * Applies a Paddle snapshot to our row: found by paddle_id, else by our id in
 * custom_data (linking a row whose create answer was lost), else by the entity's
 * snapshotRow hook (subscriptions: through the transaction that made them); unknown
 * objects are inserted as mirrors. Applied only when
 * `occurredAt` (RFC 3339; CLA_ERR_INVALID_INPUT otherwise) is newer than the row's
 * paddle_occurred_at. A snapshot that would change a reference the entity keeps fixed
 * (`webhookFixed`: a subscription's customer) is not applied: the answer says why, for
 * the caller to park the event. Call inside a transaction.
 */
export function applySnapshot(
  ctx: BillingContext,
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
  const byPaddle = ctx.db.prepare(`SELECT * FROM ${spec.table} WHERE paddle_id = ?`)
  let row = byPaddle.get(obj.id) as Row | undefined
  const cd = (obj.custom_data ?? {}) as Record<string, unknown>
  if (!row && typeof cd[CUSTOM_ID_KEY] === 'string') {
    const r = load(ctx, spec, cd[CUSTOM_ID_KEY])
    if (r && (r.paddle_id == null || r.paddle_id === obj.id)) row = r
  }
  if (!row && spec.snapshotRow) row = spec.snapshotRow(ctx.db, obj)
  const mapped = spec.fromPaddle(obj, ctx.map)
  const now = nowMicros(ctx)
  if (!row) {
    const cols: Record<string, unknown> = {
      ...mapped,
      paddle_id: obj.id,
      raw: JSON.stringify(obj),
      paddle_occurred_at: occurredAt,
    }
    spec.mirror?.(cols, obj, ctx.map)
    for (const k of spec.mirrorNeeds ?? []) {
      if (cols[k] == null) {
        return {
          parked: `${k.replace(/_id$/, '')}_unknown`,
          message: `${spec.name} ${obj.id} is not known here and its snapshot names no ${k}; it cannot be placed (replay it once it can: clavitor billing events replay)`,
        }
      }
    }
    const id = newId(spec.prefix, ctx.clock.now())
    const all: Record<string, unknown> = {
      ...cols,
      id,
      created_at: now,
      updated_at: now,
      pending_since: null,
      attempts: 0,
    }
    const keys = Object.keys(all)
    ctx.db
      .prepare(
        `INSERT INTO ${spec.table} (${keys.join(', ')}) VALUES (${keys.map((k) => '@' + k).join(', ')})`,
      )
      .run(all)
    spec.afterMerge?.(ctx.db, all as Row, obj, ctx.map)
    return 'inserted'
  }
  // Paddle names the parent's ctm_ for a department billed through it: the same customer
  const billedVia = (k: string, v: unknown): boolean =>
    k === 'customer_id' &&
    typeof row[k] === 'string' &&
    v != null &&
    ctx.map.billedThrough('customers', row[k]) === v
  for (const k of spec.webhookFixed ?? []) {
    if (mapped[k] != null && row[k] != null && mapped[k] !== row[k] && !billedVia(k, mapped[k])) {
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
  // Our hierarchy and the references we resolved stay ours when Paddle does not know them
  // (or names the customer a department is billed through).
  for (const k of ['customer_id', 'address_id', 'business_id', 'discount_id', 'product_id']) {
    const v = cols[k]
    if (
      k in cols &&
      row[k] != null &&
      (v == null || (typeof v === 'string' && PADDLE_ID.test(v)) || billedVia(k, v))
    )
      delete cols[k]
  }
  if (spec.finalStatuses?.includes(String(row.status)) && cols.status !== undefined)
    cols.status = row.status
  // an action of ours waits for Paddle: what we decided stays until Paddle confirms it
  const changing = row.pending_change != null
  if (changing) for (const k of spec.heldWhileChanging ?? []) delete cols[k]
  cols.paddle_id = obj.id
  cols.raw = JSON.stringify(obj)
  cols.paddle_occurred_at = occurredAt
  const clear = linking && spec.linkCompletesPush === true
  const keys = Object.keys(cols)
  ctx.db
    .prepare(
      `UPDATE ${spec.table} SET ${keys.map((k) => `${k} = @${k}`).join(', ')}
       ${clear ? ', pending_since = NULL, attempts = 0, last_error = NULL, next_attempt_at = NULL' : ''} WHERE id = @__id`,
    )
    .run({ ...cols, __id: row.id })
  if (!changing) spec.afterMerge?.(ctx.db, row, obj, ctx.map)
  return linking ? 'linked' : 'applied'
}
