// Lookups of the rows an input refers to, for the entities' checks: a referenced row must
// exist, the customer hierarchy is walked upwards (cycles refused), and the MSP above a
// customer gives its discount (the MSP margin).
import { claError } from '../errors.js'
import type { Db } from '../db/open.js'
import type { Row } from './entity-spec.js'
import { parseJson } from './mapping.js'

/** Walks up from `startId`; returns the chain of ids (start first). Throws on a cycle. */
export function ancestors(
  db: Db,
  startId: string,
): Array<{ id: string; level: number; parent_id: string | null }> {
  const chain: Array<{ id: string; level: number; parent_id: string | null }> = []
  const seen = new Set<string>()
  let id: string | null = startId
  const stmt = db.prepare('SELECT id, level, parent_id FROM customers WHERE id = ?')
  while (id) {
    if (seen.has(id))
      throw claError('CLA_ERR_BILLING_HIERARCHY', `customer hierarchy has a cycle at ${id}`, {
        details: { id },
      })
    seen.add(id)
    const r = stmt.get(id) as { id: string; level: number; parent_id: string | null } | undefined
    if (!r) break
    chain.push(r)
    id = r.parent_id
  }
  return chain
}

export function requireRow(db: Db, table: string, id: unknown, field: string): Row {
  const r = db.prepare(`SELECT * FROM ${table} WHERE id = ?`).get(id) as Row | undefined
  if (!r)
    throw claError('CLA_ERR_INVALID_INPUT', `${field}: no ${table} row with id ${String(id)}`, {
      details: { field, id },
    })
  return r
}

/** The discount of the MSP above `customerId`, if any (ours: the MSP margin). */
export function mspDiscountFor(db: Db, customerId: string): string | null {
  const chain = ancestors(db, customerId)
  const msp = chain.find((a) => a.level === 1)
  if (!msp) return null
  const d = db.prepare('SELECT id FROM discounts WHERE msp_id = ?').get(msp.id) as
    { id: string } | undefined
  return d?.id ?? null
}

export function checkRefs(db: Db, c: Record<string, unknown>): void {
  if (c.customer_id) requireRow(db, 'customers', c.customer_id, 'customer_id')
  if (c.address_id) requireRow(db, 'addresses', c.address_id, 'address_id')
  if (c.business_id) requireRow(db, 'businesses', c.business_id, 'business_id')
  if (c.discount_id) requireRow(db, 'discounts', c.discount_id, 'discount_id')
  const items = parseJson(c.items) as Array<{ price_id: string }> | null
  for (const it of items ?? []) requireRow(db, 'prices', it.price_id, 'items.price_id')
}

/** One row of `table` by our id, as stored. */
export function loadRow(db: Db, table: string, id: string): Row | undefined {
  return db.prepare(`SELECT * FROM ${table} WHERE id = ?`).get(id) as Row | undefined
}
