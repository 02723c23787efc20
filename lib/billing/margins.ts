// MSP margins everywhere (docs/billing.md "MSP margins"): an MSP's margin is its discount
// (discounts.msp_id), and it applies to every current and future subscription of every
// customer under it. New subscriptions take it at creation (entities-subscriptions.ts);
// this module brings EXISTING ones in line when the margin is set (a discount created or
// changed for an MSP) or a customer moves to another MSP, through the subscription action
// `set_discount` (subscription-lifecycle.ts): written here first, then at Paddle, audited
// (`subscription.change`), never duplicated.
//
// Which discount a subscription should carry: its customer's MSP's margin, or none when
// that MSP has no margin (a customer moved away from a margin loses it). A discount that is
// not a margin (a promotion given by hand) is left alone: Paddle takes one discount per
// subscription, and a person chose that one. The change takes effect from the next billing
// period: a margin never rewrites what was already billed.
import type { Db } from '../db/open.js'
import { mspDiscountFor } from './references.js'

/** A subscription whose discount is to change to its MSP's margin. */
export interface MarginChange {
  /** The subscription. */
  subscription_id: string
  /** Its customer. */
  customer_id: string
  /** Discount id it carries now; null: none. */
  from: string | null
  /** Discount id it should carry; null: none. */
  to: string | null
}

/** A subscription left as it is, and why. */
export interface MarginSkip {
  /** The subscription. */
  subscription_id: string
  /**
   * promotion: it carries a discount that is no margin; change_waiting: another change waits for
   * Paddle; failed: the change could not be made.
   */
  reason: 'promotion' | 'change_waiting' | 'failed'
  /** More about the reason, when there is any. */
  detail?: string
}

/** Which subscriptions' discounts should change to match their MSP's margin, and which are left. */
export interface MarginPlan {
  /** Changes to make. */
  changes: MarginChange[]
  /** Subscriptions left alone. */
  skipped: MarginSkip[]
}

/**
 * The subscriptions (not canceled) of the customers under `scope`: an MSP id (its whole
 * tree), a customer id (it and its departments), or everything when omitted; for each, the
 * margin it should carry and whether it can be changed now.
 */
export function planMargins(db: Db, scope?: { customerId: string }): MarginPlan {
  const rows = db
    .prepare(
      `WITH RECURSIVE tree(id) AS (
         SELECT id FROM customers WHERE @root IS NULL OR id = @root
         UNION SELECT c.id FROM customers c JOIN tree ON c.parent_id = tree.id)
       SELECT s.id, s.customer_id, s.discount_id, s.pending_change, d.msp_id AS current_msp
       FROM subscriptions s JOIN tree ON tree.id = s.customer_id
       LEFT JOIN discounts d ON d.id = s.discount_id
       WHERE s.status <> 'canceled' ORDER BY s.id`,
    )
    .all({ root: scope?.customerId ?? null }) as Array<{
    id: string
    customer_id: string
    discount_id: string | null
    pending_change: string | null
    current_msp: string | null
  }>
  const plan: MarginPlan = { changes: [], skipped: [] }
  for (const r of rows) {
    const target = mspDiscountFor(db, r.customer_id)
    if (r.discount_id === target) continue
    if (r.discount_id !== null && r.current_msp === null) {
      plan.skipped.push({ subscription_id: r.id, reason: 'promotion', detail: r.discount_id })
      continue
    }
    if (r.pending_change !== null) {
      plan.skipped.push({ subscription_id: r.id, reason: 'change_waiting' })
      continue
    }
    plan.changes.push({
      subscription_id: r.id,
      customer_id: r.customer_id,
      from: r.discount_id,
      to: target,
    })
  }
  return plan
}
