// Reports over our billing rows, for the admin pages and the CLI: the customer hierarchy
// with each MSP's discount, and revenue by discount (the MSP margins). Read-only, local:
// they never wait for Paddle.
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'

/**
 * A customer in the hierarchy, with its children (customers of an MSP, departments of a customer).
 */
export interface CustomerNode {
  id: string
  /** Paddle's id; null until the customer reached Paddle. */
  paddle_id: string | null
  /** 1 MSP, 2 customer, 3 department; 0 unplaced (made at Paddle, not filed yet). */
  level: number
  name: string | null
  email: string
  /** Paddle's status (active, archived). */
  status: string
  /** Our write is not confirmed by Paddle yet. */
  pending: boolean
  /** Paddle refused our write for good. */
  failed: boolean
  /** The MSP's margin (its discount), if it is an MSP with one. */
  discount_id: string | null
  children: CustomerNode[]
}

/** Revenue of one discount in one currency; amounts are decimal strings in minor currency units. */
export interface RevenueRow {
  /** The discount the transactions carried; null: none. */
  discount_id: string | null
  /** The MSP whose margin that discount is; null when it is none. */
  msp_id: string | null
  /** ISO 4217 code. */
  currency_code: string
  /** Sum of transaction totals, minor units, as a decimal string. */
  gross: string
  /** Approved refunds, credits and chargebacks (negative) and their reversals, summed. */
  adjustments: string
  /** Net: gross + adjustments. */
  revenue: string
  /** Transactions counted. */
  transactions: number
  /** Adjustments counted. */
  adjusted: number
}

/** Transaction statuses that count as revenue. */
const BILLED_STATUSES = ['billed', 'paid', 'completed', 'past_due']

/**
 * The whole customer hierarchy: MSPs with their customers and departments, then the
 * unplaced customers (level 0: made at Paddle, not filed yet; never an MSP, no children).
 */
export function customerTree(db: Db): CustomerNode[] {
  const rows = db
    .prepare(
      `SELECT c.id, c.paddle_id, c.level, c.name, c.email, c.status, c.parent_id, c.pending_since, c.failed_at, d.id AS discount_id
       FROM customers c LEFT JOIN discounts d ON d.msp_id = c.id ORDER BY c.level = 0, c.level, c.id`,
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

/** Adjustment actions and the sign they give revenue (Paddle's `action`). */
const ADJUSTMENT_SIGN: Record<string, -1 | 1> = {
  refund: -1,
  credit: -1,
  chargeback: -1,
  credit_reverse: 1,
  chargeback_reverse: 1,
  // chargeback_warning moves no money
}

/** The period of a revenue report; both ends optional. */
export interface RevenueOptions {
  /** RFC 3339; transactions billed, adjustments made at or after it. */
  from?: string
  /** RFC 3339; before it. */
  to?: string
}

function periodBound(name: string, v: string | undefined): number | null {
  if (v === undefined) return null
  const ms = Date.parse(v)
  if (!/^\d{4}-\d{2}-\d{2}/.test(v) || Number.isNaN(ms))
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      `${name} must be an RFC 3339 date or date-time, got "${v}"`,
      {
        details: { field: name },
      },
    )
  return ms
}

/**
 * Revenue by discount (the MSP margins) and currency, net of adjustments, exact (BigInt
 * over the minor-unit strings): the totals of billed, paid, completed and past-due
 * transactions (`gross`), minus approved refunds, credits and chargebacks on them plus
 * their reversals (`adjustments`, signed), = `revenue`. Within a period: transactions by
 * `billed_at`, adjustments by when Paddle made them; an adjustment counts under its
 * transaction's discount and its own currency.
 */
export function revenueByDiscount(db: Db, opts: RevenueOptions = {}): RevenueRow[] {
  const from = periodBound('from', opts.from)
  const to = periodBound('to', opts.to)
  const inPeriod = (at: string | null | undefined, fallbackUs?: number): boolean => {
    if (from === null && to === null) return true
    const ms = at ? Date.parse(at) : fallbackUs !== undefined ? fallbackUs / 1000 : Number.NaN
    if (Number.isNaN(ms)) return false
    return (from === null || ms >= from) && (to === null || ms < to)
  }
  const txns = db
    .prepare(
      `SELECT t.discount_id, d.msp_id, t.currency_code, t.total, t.billed_at, t.created_at
       FROM transactions t LEFT JOIN discounts d ON d.id = t.discount_id
       WHERE t.status IN (${BILLED_STATUSES.map(() => '?').join(', ')}) AND t.total IS NOT NULL`,
    )
    .all(...BILLED_STATUSES) as Array<{
    discount_id: string | null
    msp_id: string | null
    currency_code: string
    total: string
    billed_at: string | null
    created_at: number
  }>
  const adjustments = db
    .prepare(
      `SELECT t.discount_id, d.msp_id, COALESCE(a.currency_code, t.currency_code) AS currency_code,
         a.total, a.action, a.raw, a.created_at
       FROM adjustments a JOIN transactions t ON t.id = a.transaction_id
       LEFT JOIN discounts d ON d.id = t.discount_id
       WHERE a.status = 'approved' AND a.total IS NOT NULL`,
    )
    .all() as Array<{
    discount_id: string | null
    msp_id: string | null
    currency_code: string
    total: string
    action: string
    raw: string | null
    created_at: number
  }>
  const sums = new Map<string, RevenueRow & { g: bigint; a: bigint }>()
  const slot = (r: {
    discount_id: string | null
    msp_id: string | null
    currency_code: string
  }) => {
    const key = `${r.discount_id ?? ''}|${r.currency_code}`
    let cur = sums.get(key)
    if (!cur) {
      cur = {
        discount_id: r.discount_id,
        msp_id: r.msp_id,
        currency_code: r.currency_code,
        gross: '0',
        adjustments: '0',
        revenue: '0',
        transactions: 0,
        adjusted: 0,
        g: 0n,
        a: 0n,
      }
      sums.set(key, cur)
    }
    return cur
  }
  const minor = /^-?[0-9]+$/
  for (const r of txns) {
    if (!minor.test(r.total) || !inPeriod(r.billed_at, r.created_at)) continue
    const cur = slot(r)
    cur.g += BigInt(r.total)
    cur.transactions += 1
  }
  for (const r of adjustments) {
    const sign = ADJUSTMENT_SIGN[r.action]
    if (sign === undefined || !minor.test(r.total)) continue
    const madeAt = r.raw
      ? ((JSON.parse(r.raw) as { created_at?: string }).created_at ?? null)
      : null
    if (!inPeriod(madeAt, r.created_at)) continue
    const cur = slot(r)
    cur.a += BigInt(sign) * BigInt(r.total)
    cur.adjusted += 1
  }
  return [...sums.values()]
    .map(({ g, a, ...r }) => ({
      ...r,
      gross: g.toString(),
      adjustments: a.toString(),
      revenue: (g + a).toString(),
    }))
    .sort(
      (a, b) =>
        String(a.discount_id).localeCompare(String(b.discount_id)) ||
        a.currency_code.localeCompare(b.currency_code),
    )
}
