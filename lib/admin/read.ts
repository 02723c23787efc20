// Read models for the admin pages and API: plain SELECTs over the metadata tables, paged,
// limited to a scope (scope.ts: a customer subtree, or null for the installation). No
// decisions and no writes here (writes go through Admin.perform and the billing layer);
// the desk (desk.ts) chooses the scope, from the acting admin.
import type { Db } from '../db/open.js'
import { blobIndex } from '../store/blob-index.js'
import { scopeWhere, type Scope } from './scope.js'

export interface Page<T> {
  rows: T[]
  limit: number
  offset: number
  /** True when another page follows. */
  more: boolean
}

export const PAGE_SIZE = 50

/** Paging from a query: limit 1-500 (default PAGE_SIZE), offset from 0; junk is the default. */
export function pageArgs(limit: unknown, offset: unknown): { limit: number; offset: number } {
  const l = Number.parseInt(String(limit ?? ''), 10)
  const o = Number.parseInt(String(offset ?? ''), 10)
  return {
    limit: Number.isFinite(l) && l > 0 ? Math.min(l, 500) : PAGE_SIZE,
    offset: Number.isFinite(o) && o > 0 ? Math.min(o, 1_000_000_000) : 0,
  }
}

function paged<T>(
  db: Db,
  sql: string,
  args: unknown[],
  p: { limit: number; offset: number },
): Page<T> {
  const rows = db.prepare(`${sql} LIMIT ? OFFSET ?`).all(...args, p.limit + 1, p.offset) as T[]
  const more = rows.length > p.limit
  if (more) rows.pop()
  return { rows, limit: p.limit, offset: p.offset, more }
}

export interface DashboardFacts {
  /** unplaced: made at Paddle, not filed under a parent yet (level 0), counted apart */
  customers: { msp: number; customer: number; department: number; unplaced: number }
  subscriptions: { total: number; active: number }
  vaults: number
  credentials: number
  /** The installation's blobs, POPs and audit events: null for a scoped admin. */
  blobs: { count: number; bytes: number } | null
  pops: number | null
  events: number | null
  /** Admins whose scope lies within this one. */
  admins: number
}

/** The dashboard's counts, within the scope (null: the whole installation). */
export function dashboardFacts(db: Db, scope: Scope = null): DashboardFacts {
  const one = (sql: string, args: unknown[] = []) =>
    (db
      .prepare(sql)
      .pluck()
      .get(...args) as number | null) ?? 0
  const c = scopeWhere('id', scope)
  const levels = db
    .prepare(`SELECT level, count(*) AS n FROM customers WHERE ${c.sql} GROUP BY level`)
    .all(...c.args) as Array<{ level: number; n: number }>
  const lv = (l: number) => levels.find((x) => x.level === l)?.n ?? 0
  const owned = scopeWhere('customer_id', scope)
  const vaultOwner = scopeWhere('v.customer_id', scope)
  const admins = scopeWhere('r.customer_id', scope)
  const installation = scope === null
  return {
    customers: { msp: lv(1), customer: lv(2), department: lv(3), unplaced: lv(0) },
    subscriptions: {
      total: one(`SELECT count(*) FROM subscriptions WHERE ${owned.sql}`, owned.args),
      active: one(
        `SELECT count(*) FROM subscriptions WHERE status = 'active' AND ${owned.sql}`,
        owned.args,
      ),
    },
    vaults: one(`SELECT count(*) FROM vaults WHERE ${owned.sql}`, owned.args),
    credentials: one(
      `SELECT count(*) FROM credentials c JOIN vaults v ON v.id = c.vault_id WHERE ${vaultOwner.sql}`,
      vaultOwner.args,
    ),
    blobs: installation ? blobIndex(db).totals() : null,
    pops: installation ? one('SELECT count(*) FROM pops WHERE removed_at IS NULL') : null,
    events: installation ? one('SELECT count(*) FROM events') : null,
    admins: one(
      `SELECT count(DISTINCT h.id) FROM humans h JOIN role_assignments r ON r.human_id = h.id
        WHERE h.disabled_at IS NULL AND ${admins.sql}`,
      admins.args,
    ),
  }
}

/** Cumulative blob count and bytes at up to `buckets` evenly spaced points in time. */
export function blobGrowth(
  db: Db,
  buckets = 30,
): Array<{ at: number; count: number; bytes: number }> {
  const index = blobIndex(db)
  const span = index.createdRange()
  if (span.lo === null || span.hi === null) return []
  const lo = span.lo
  const width = Math.max(1, Math.ceil((span.hi - lo + 1) / buckets))
  const rows = index.histogram(lo, width)
  let count = 0
  let bytes = 0
  return rows.map((r) => {
    count += r.n
    bytes += r.bytes
    return { at: lo + (r.b + 1) * width, count, bytes }
  })
}

/** Each POP's newest `perPop` lag samples, oldest first. */
export function popLagSeries(
  db: Db,
  perPop = 60,
): Array<{ popId: string; points: Array<{ at: number; lagUs: number }> }> {
  const pops = db
    .prepare('SELECT DISTINCT pop_id FROM pop_lag_samples ORDER BY pop_id')
    .pluck()
    .all() as string[]
  const q = db.prepare(
    'SELECT at, lag_us FROM pop_lag_samples WHERE pop_id = ? ORDER BY at DESC LIMIT ?',
  )
  return pops.map((popId) => ({
    popId,
    points: (q.all(popId, perPop) as Array<{ at: number; lag_us: number }>)
      .reverse()
      .map((r) => ({ at: r.at, lagUs: r.lag_us })),
  }))
}

export interface PopStateRow {
  id: string
  name: string | null
  removed_at: number | null
  cursor: string | null
  last_success_at: number | null
  last_error: string | null
  last_error_at: number | null
  lag_us: number | null
  blobs: number | null
  updated_at: number | null
}

export function popStates(db: Db): PopStateRow[] {
  return db
    .prepare(
      `SELECT p.id, p.name, p.removed_at, s.cursor, s.last_success_at, s.last_error, s.last_error_at, s.lag_us, s.blobs, s.updated_at
         FROM pops p LEFT JOIN pop_sync_state s ON s.pop_id = p.id ORDER BY p.id`,
    )
    .all() as PopStateRow[]
}

/** Paging, the scope every list takes, and its optional filters. */
export interface ListArgs {
  limit: number
  offset: number
  scope: Scope
  /** Only rows with this status (subscriptions, transactions, discounts). */
  status?: string
  /** Only rows of this customer (not its subtree). */
  customer?: string
  /** Only subscriptions carrying this discount. */
  discount?: string
}

/** The filters of a list as one WHERE condition, on top of the scope's. */
function filtered(
  w: { sql: string; args: unknown[] },
  p: ListArgs,
  cols: { status?: string; customer: string; discount?: string },
): { sql: string; args: unknown[] } {
  const sql = [w.sql]
  const args = [...w.args]
  if (p.status && cols.status) {
    sql.push(`${cols.status} = ?`)
    args.push(p.status)
  }
  if (p.customer) {
    sql.push(`${cols.customer} = ?`)
    args.push(p.customer)
  }
  if (p.discount && cols.discount) {
    sql.push(`${cols.discount} = ?`)
    args.push(p.discount)
  }
  return { sql: sql.join(' AND '), args }
}

export function listSubscriptions(db: Db, p: ListArgs) {
  const w = filtered(scopeWhere('s.customer_id', p.scope), p, {
    status: 's.status',
    customer: 's.customer_id',
    discount: 's.discount_id',
  })
  return paged<Record<string, unknown>>(
    db,
    `SELECT s.id, s.paddle_id, s.customer_id, c.name AS customer_name, s.vault_l0, v.id AS vault_id, s.status, s.currency_code,
            s.discount_id, s.next_billed_at, s.pending_since, s.failed_at, s.last_error, s.pending_change
       FROM subscriptions s LEFT JOIN customers c ON c.id = s.customer_id LEFT JOIN vaults v ON v.subscription_id = s.id
      WHERE ${w.sql} ORDER BY s.created_at DESC, s.id`,
    w.args,
    p,
  )
}

export function listTransactions(db: Db, p: ListArgs) {
  const w = filtered(scopeWhere('t.customer_id', p.scope), p, {
    status: 't.status',
    customer: 't.customer_id',
  })
  return paged<Record<string, unknown>>(
    db,
    `SELECT t.id, t.paddle_id, t.customer_id, c.name AS customer_name, t.subscription_id, t.status, t.currency_code,
            t.grand_total, t.billed_at, t.pending_since, t.failed_at, t.last_error
       FROM transactions t LEFT JOIN customers c ON c.id = t.customer_id
      WHERE ${w.sql} ORDER BY t.created_at DESC, t.id`,
    w.args,
    p,
  )
}

export function listVaults(db: Db, p: ListArgs) {
  const w = filtered(scopeWhere('v.customer_id', p.scope), p, { customer: 'v.customer_id' })
  return paged<Record<string, unknown>>(
    db,
    `SELECT v.id, v.name, v.customer_id, c.name AS customer_name, v.subscription_id, s.status AS subscription_status,
            (SELECT count(*) FROM credentials WHERE vault_id = v.id) AS credentials,
            (SELECT count(DISTINCT p0) FROM credentials WHERE vault_id = v.id) AS p0s, v.created_at
       FROM vaults v LEFT JOIN customers c ON c.id = v.customer_id LEFT JOIN subscriptions s ON s.id = v.subscription_id
      WHERE ${w.sql} ORDER BY v.created_at DESC, v.id`,
    w.args,
    p,
  )
}

/** Discounts; for a scoped admin, the margins of MSPs within the scope. */
export function listDiscounts(db: Db, p: ListArgs) {
  const w = filtered(scopeWhere('d.msp_id', p.scope), p, {
    status: 'd.status',
    customer: 'd.msp_id',
  })
  return paged<Record<string, unknown>>(
    db,
    `SELECT d.id, d.paddle_id, d.msp_id, c.name AS msp_name, d.description, d.type, d.amount, d.currency_code, d.status,
            (SELECT count(*) FROM subscriptions WHERE discount_id = d.id) AS subscriptions,
            d.pending_since, d.failed_at, d.last_error
       FROM discounts d LEFT JOIN customers c ON c.id = d.msp_id
      WHERE ${w.sql} ORDER BY d.created_at DESC, d.id`,
    w.args,
    p,
  )
}

/** An MSP's margin (its discount), if any. */
export function mspDiscount(db: Db, mspId: string): Record<string, unknown> | undefined {
  return db
    .prepare(
      `SELECT id, paddle_id, description, type, amount, currency_code, status, pending_since, failed_at, last_error
         FROM discounts WHERE msp_id = ?`,
    )
    .get(mspId) as Record<string, unknown> | undefined
}
