// What a vault may ask about itself with its own API key (GET /api/v1/vault/status): its
// subscription's status and dates, its plan, limits and usage. Enough to show "your
// subscription ends on …" or "3 of 5 devices" without any billing logic in the vault.
// Read-only; the subscription's fields are the mirror lib/billing keeps (Paddle's
// confirmed state plus our pending changes).
import { entitlementsOf } from '../billing/entitlements.js'
import type { Db } from '../db/open.js'
import { devicesInVault, vaultsOnSubscription } from './limits.js'
import { ACTIVE_SUBSCRIPTION_STATUSES, requireVault } from './vaults.js'

/**
 * What a vault may learn about itself (GET /api/v1/vault/status): subscription, plans, limits,
 * usage.
 */
export interface VaultStatus {
  vault: { id: string; name: string; customer_id: string }
  /** Null when the vault has no subscription (it cannot register). */
  subscription: {
    id: string
    status: string
    collection_mode: string
    current_period_starts_at: string | null
    current_period_ends_at: string | null
    next_billed_at: string | null
    canceled_at: string | null
    paused_at: string | null
    /** Paddle's scheduled change ({action, effective_at, resume_at}) or null. */
    scheduled_change: unknown
  } | null
  /** True when the subscription lets this vault register (active or trialing). */
  active: boolean
  /** The plans its items sell; empty when unplanned (no limits enforced). */
  plans: Array<{ id: string; name: string; quantity: number }>
  /** The subscription's limits (lib/billing/entitlements.ts); null: no limit. */
  limits: { max_vaults: number | null; max_devices_per_vault: number | null }
  /** Vaults on the subscription and devices (P0s) in this vault. */
  usage: { vaults: number; devices: number }
  /** True when a NEW device may be enrolled now (active and under the device limit). */
  can_enrol_device: boolean
}

export function vaultStatus(db: Db, vaultId: string): VaultStatus {
  const v = requireVault(db, vaultId)
  const devices = devicesInVault(db, v.id)
  const base = { vault: { id: v.id, name: v.name, customer_id: v.customer_id } }
  const sub =
    v.subscription_id === null
      ? undefined
      : (db
          .prepare(
            `SELECT id, status, collection_mode, current_period_starts_at, current_period_ends_at,
               next_billed_at, canceled_at, paused_at, scheduled_change
             FROM subscriptions WHERE id = ?`,
          )
          .get(v.subscription_id) as
          | (Omit<NonNullable<VaultStatus['subscription']>, 'scheduled_change'> & {
              scheduled_change: string | null
            })
          | undefined)
  const e = sub ? entitlementsOf(db, sub.id) : undefined
  if (!sub || !e) {
    return {
      ...base,
      subscription: null,
      active: false,
      plans: [],
      limits: { max_vaults: null, max_devices_per_vault: null },
      usage: { vaults: 0, devices },
      can_enrol_device: false,
    }
  }
  const active = ACTIVE_SUBSCRIPTION_STATUSES.includes(sub.status)
  return {
    ...base,
    subscription: {
      ...sub,
      scheduled_change: sub.scheduled_change === null ? null : JSON.parse(sub.scheduled_change),
    },
    active,
    plans: e.plans,
    limits: { max_vaults: e.max_vaults, max_devices_per_vault: e.max_devices_per_vault },
    usage: { vaults: vaultsOnSubscription(db, sub.id), devices },
    can_enrol_device:
      active && (e.max_devices_per_vault === null || devices < e.max_devices_per_vault),
  }
}
