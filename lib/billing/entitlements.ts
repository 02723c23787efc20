// What a subscription is entitled to: the limits its items buy through their plans
// (plans.ts). lib/credentials enforces them where vaults and devices are created; this
// module only answers "how much", from our rows: the items as Paddle last confirmed them
// plus our own changes not yet confirmed (we lead: our row is written first).
//
// The rule (docs/billing.md "Plans and limits"):
//   - items counted: status active or trialing (Paddle marks removed ones inactive);
//   - an item's plan is the plan its price sells (a price sells at most one plan);
//   - max_vaults adds up: Σ plan.max_vaults × quantity (quantity 3 of "Team" = 3 × Team's);
//   - max_devices_per_vault is the largest of the items' plans (a vault is one vault);
//   - a null limit in any counted plan makes that limit null (unlimited);
//   - a subscription none of whose items sells a plan is "unplanned": no limits are
//     enforced (what installations without plans had before plans existed), and
//     `planned: false` says so to the vault and the admin.
import type { Db } from '../db/open.js'

/** A plan a subscription's counted items sell, and how many units. */
export interface PlanUse {
  /** The plan id. */
  id: string
  /** The plan's name. */
  name: string
  /** Units of this plan on the subscription (sum of its items' quantities). */
  quantity: number
}

/** What a subscription's items entitle it to (docs/billing.md "Plans and limits"). */
export interface Entitlements {
  /** The subscription. */
  subscription_id: string
  /** True when at least one counted item sells a plan. */
  planned: boolean
  /** The plans its counted items sell, by name. */
  plans: PlanUse[]
  /** Vaults this subscription may pay for; null = no limit. */
  max_vaults: number | null
  /** Device P0s each of its vaults may enrol; null = no limit. */
  max_devices_per_vault: number | null
}

const COUNTED_ITEM_STATUSES = ['active', 'trialing']

/** The limits of one subscription; undefined when it does not exist. */
export function entitlementsOf(db: Db, subscriptionId: string): Entitlements | undefined {
  const exists = db.prepare('SELECT 1 FROM subscriptions WHERE id = ?').get(subscriptionId)
  if (!exists) return undefined
  // An item names our price id, or Paddle's when the item came from a Paddle snapshot of a
  // price we had not linked yet: match both.
  const rows = db
    .prepare(
      `SELECT pl.id, pl.name, pl.max_vaults, pl.max_devices_per_vault, SUM(si.quantity) AS quantity
       FROM subscription_items si
       JOIN prices pr ON pr.id = si.price_id OR pr.paddle_id = si.price_id
       JOIN plan_prices pp ON pp.price_id = pr.id
       JOIN plans pl ON pl.id = pp.plan_id
       WHERE si.subscription_id = ? AND si.status IN (${COUNTED_ITEM_STATUSES.map(() => '?').join(', ')})
       GROUP BY pl.id ORDER BY pl.name, pl.id`,
    )
    .all(subscriptionId, ...COUNTED_ITEM_STATUSES) as Array<{
    id: string
    name: string
    max_vaults: number | null
    max_devices_per_vault: number | null
    quantity: number
  }>
  if (rows.length === 0) {
    return {
      subscription_id: subscriptionId,
      planned: false,
      plans: [],
      max_vaults: null,
      max_devices_per_vault: null,
    }
  }
  let maxVaults: number | null = 0
  let maxDevices: number | null = 0
  for (const r of rows) {
    maxVaults =
      maxVaults === null || r.max_vaults === null ? null : maxVaults + r.max_vaults * r.quantity
    maxDevices =
      maxDevices === null || r.max_devices_per_vault === null
        ? null
        : Math.max(maxDevices, r.max_devices_per_vault)
  }
  return {
    subscription_id: subscriptionId,
    planned: true,
    plans: rows.map((r) => ({ id: r.id, name: r.name, quantity: r.quantity })),
    max_vaults: maxVaults,
    max_devices_per_vault: maxDevices,
  }
}

/** "Team ×3, Extra" for messages: the plans a limit came from. */
export function planLabel(e: Entitlements): string {
  if (!e.planned) return 'no plan'
  return e.plans.map((p) => (p.quantity > 1 ? `${p.name} ×${p.quantity}` : p.name)).join(', ')
}
