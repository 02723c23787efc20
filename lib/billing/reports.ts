// Reports over our billing rows, for the admin pages and the CLI: the customer hierarchy
// with each MSP's discount, and revenue by discount (the MSP margins). Read-only, local:
// they never wait for Paddle.
import type { Db } from '../db/open.js'

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

/** Transaction statuses that count as revenue. */
const BILLED_STATUSES = ['billed', 'paid', 'completed', 'past_due']

/** The whole customer hierarchy (MSPs with their customers and departments). */
export function customerTree(db: Db): CustomerNode[] {
  const rows = db
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
export function revenueByDiscount(db: Db): RevenueRow[] {
  const rows = db
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
