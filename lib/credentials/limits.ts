// Plan limits, enforced where the thing is created (docs/billing.md "Plans and limits"):
//   - a vault linked to a subscription that pays for as many vaults as its plan allows is
//     refused (CLA_ERR_PLAN_VAULT_LIMIT), at creation and when re-linked;
//   - a registration of a NEW device P0 in a vault that has enrolled as many devices as
//     the plan allows is refused (CLA_ERR_PLAN_DEVICE_LIMIT); a new version of a P0 the
//     customer has registered before is never refused for a limit;
//   - a plan lowered below what is used keeps what exists and refuses new ones (the counts
//     are compared at creation only).
// lib/billing says how much a subscription is entitled to (entitlements.ts); this module
// counts what the vaults use (they are ours) and decides.
import { entitlementsOf, planLabel, type Entitlements } from '../billing/entitlements.js'
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'

/** Vaults paid for by a subscription. */
export function vaultsOnSubscription(db: Db, subscriptionId: string): number {
  return db
    .prepare('SELECT COUNT(*) FROM vaults WHERE subscription_id = ?')
    .pluck()
    .get(subscriptionId) as number
}

/** Devices (distinct P0s) registered through a vault. */
export function devicesInVault(db: Db, vaultId: string): number {
  return db
    .prepare('SELECT COUNT(DISTINCT p0) FROM credentials WHERE vault_id = ?')
    .pluck()
    .get(vaultId) as number
}

/**
 * Throws CLA_ERR_PLAN_VAULT_LIMIT when one more vault would pass the subscription's
 * max_vaults. Call inside the transaction that links the vault, before linking it.
 */
export function requireVaultRoom(db: Db, subscriptionId: string): void {
  const e = entitlementsOf(db, subscriptionId)
  if (!e || e.max_vaults === null) return
  const used = vaultsOnSubscription(db, subscriptionId)
  if (used + 1 > e.max_vaults) {
    throw claError(
      'CLA_ERR_PLAN_VAULT_LIMIT',
      `subscription ${subscriptionId} pays for ${e.max_vaults} vault(s) on plan ${planLabel(e)} and has ${used}; raise the plan or quantity, or link the vault to another subscription`,
      { details: limitDetails(e, 'max_vaults', e.max_vaults, used) },
    )
  }
}

/**
 * Throws CLA_ERR_PLAN_DEVICE_LIMIT when `p0` is a new device for this customer and the
 * vault has as many devices as its plan allows. Cheap enough to call twice: before the
 * blob is written (nothing stored for a refusal) and inside the registration's
 * transaction (two new devices racing for the last place cannot both take it).
 */
export function requireDeviceRoom(
  db: Db,
  vault: { id: string; customer_id: string; subscription_id: string | null },
  p0: string,
): void {
  if (vault.subscription_id === null) return // refused elsewhere: no subscription
  const known = db
    .prepare('SELECT 1 FROM credentials WHERE p0 = ? AND customer_id = ? LIMIT 1')
    .get(p0, vault.customer_id)
  if (known) return // a new version of an enrolled device: never refused for a limit
  const e = entitlementsOf(db, vault.subscription_id)
  if (!e || e.max_devices_per_vault === null) return
  const used = devicesInVault(db, vault.id)
  if (used + 1 > e.max_devices_per_vault) {
    throw claError(
      'CLA_ERR_PLAN_DEVICE_LIMIT',
      `vault ${vault.id} has enrolled ${used} device(s); plan ${planLabel(e)} allows ${e.max_devices_per_vault} per vault. New versions of enrolled devices are still accepted; raise the plan to enrol more`,
      {
        details: {
          vault: vault.id,
          ...limitDetails(e, 'max_devices_per_vault', e.max_devices_per_vault, used),
        },
      },
    )
  }
}

function limitDetails(
  e: Entitlements,
  limit: string,
  max: number,
  used: number,
): Record<string, unknown> {
  return {
    subscription: e.subscription_id,
    plans: e.plans.map((p) => p.id),
    limit,
    max,
    used,
  }
}
