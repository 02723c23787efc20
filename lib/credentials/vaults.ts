// Vaults and their API keys (tables `vaults`, `vault_api_keys`).
//
// A vault belongs to one customer and is paid for by one subscription, within the vault
// limit of that subscription's plan (limits.ts). Each vault has
// any number of API keys; a key authenticates as its vault and is scoped to the vault's
// customer. Keys are stored hashed and shown once (lib/credentials/keys.ts).
//
// The subscription's status decides whether a vault may register credentials:
// `active` and `trialing` count as active; anything else (past_due, paused, canceled, an
// unknown future status) and a vault without a subscription do not. This module only
// reads `subscriptions.status`; lib/billing owns it.
import { randomBytes } from 'node:crypto'
import type { Db } from '../db/open.js'
import { nowMicros } from '../db/open.js'
import { ClavitorError, claError } from '../errors.js'
import { appendEvent } from '../audit/log.js'
import { apiKeyIdOf, bearerToken, generateApiKey, parseApiKey, secretMatches } from './keys.js'
import { requireVaultRoom } from './limits.js'

/** Subscription statuses that allow registering credentials. */
export const ACTIVE_SUBSCRIPTION_STATUSES: readonly string[] = ['active', 'trialing']

export const VAULT_ID_PATTERN = /^vlt_[0-9a-f]{16}$/
const NAME_MAX = 200

/** A vault (table `vaults`): one customer's, paid for by at most one subscription. */
export interface Vault {
  /** `vlt_` and 16 lowercase hex characters. */
  id: string
  /** The customer the vault belongs to. */
  customer_id: string
  /** The subscription that pays for it; null: none (it cannot register). */
  subscription_id: string | null
  /** Display name, at most 200 characters. */
  name: string
  /** µs since the Unix epoch. */
  created_at: number
}

/** A vault in a list, with its counts and subscription status. */
export interface VaultSummary extends Vault {
  /** Distinct P0s registered through this vault. */
  credentials: number
  /** Keys not revoked. */
  active_keys: number
  /** The subscription's status, or null without one. */
  subscription_status: string | null
}

/** A vault API key's public facts (never its secret or hash). */
export interface ApiKeyInfo {
  /** The key id (the `<id>` of `clv_<id>_<secret>`). */
  id: string
  /** The vault the key authenticates as. */
  vault_id: string
  /** µs since the Unix epoch. */
  created_at: number
  /** µs epoch of its revocation; null while valid. */
  revoked_at: number | null
}

/** Who a valid vault API key is: the key, its vault and that vault's customer. */
export interface VaultAuth {
  keyId: string
  vaultId: string
  customerId: string
}

/** Who did it, for the audit log (a human id, 'system', 'cli'). Default 'system'. */
export interface ActorOption {
  actor?: string
}

function checkText(name: string, v: unknown, max: number): string {
  if (typeof v !== 'string' || v.trim().length === 0 || v.length > max) {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      `${name} must be a non-empty string of at most ${max} characters`,
      {
        details: { field: name },
      },
    )
  }
  return v
}

export function getVault(db: Db, vaultId: string): Vault | undefined {
  return db
    .prepare('SELECT id, customer_id, subscription_id, name, created_at FROM vaults WHERE id = ?')
    .get(vaultId) as Vault | undefined
}

function requireVault(db: Db, vaultId: string): Vault {
  const v = getVault(db, vaultId)
  if (!v)
    throw claError('CLA_ERR_NOT_FOUND', `vault ${vaultId} does not exist`, {
      details: { vault: vaultId },
    })
  return v
}

/** True when `ancestorId` is `customerId` or one of its parents. */
function isSelfOrAncestor(db: Db, ancestorId: string, customerId: string): boolean {
  const row = db
    .prepare(
      `WITH RECURSIVE up(id, parent_id) AS (
         SELECT id, parent_id FROM customers WHERE id = ?
         UNION ALL SELECT c.id, c.parent_id FROM customers c JOIN up ON c.id = up.parent_id)
       SELECT 1 AS ok FROM up WHERE id = ? LIMIT 1`,
    )
    .get(customerId, ancestorId)
  return row !== undefined
}

/**
 * Creates a vault for a customer. The subscription, when given, must exist and belong to
 * the customer or to one of its parents (an MSP may pay for its customers' vaults).
 */
export function createVault(
  db: Db,
  input: {
    customerId: string
    subscriptionId?: string | null
    name: string
    id?: string
  } & ActorOption,
): Vault {
  const name = checkText('name', input.name, NAME_MAX)
  const customerId = checkText('customerId', input.customerId, 200)
  const id = input.id ?? `vlt_${randomBytes(8).toString('hex')}`
  if (!VAULT_ID_PATTERN.test(id)) {
    throw claError('CLA_ERR_INVALID_INPUT', 'vault id must look like vlt_<16 lowercase hex>', {
      details: { field: 'id' },
    })
  }
  const write = db.transaction((): Vault => {
    const customer = db.prepare('SELECT id FROM customers WHERE id = ?').get(customerId)
    if (!customer) {
      throw claError('CLA_ERR_NOT_FOUND', `customer ${customerId} does not exist`, {
        details: { customer: customerId },
      })
    }
    const subscriptionId = input.subscriptionId ?? null
    if (subscriptionId !== null) {
      const sub = db
        .prepare('SELECT customer_id FROM subscriptions WHERE id = ?')
        .get(subscriptionId) as { customer_id: string } | undefined
      if (!sub) {
        throw claError('CLA_ERR_NOT_FOUND', `subscription ${subscriptionId} does not exist`, {
          details: { subscription: subscriptionId },
        })
      }
      if (!isSelfOrAncestor(db, sub.customer_id, customerId)) {
        throw claError(
          'CLA_ERR_INVALID_INPUT',
          `subscription ${subscriptionId} belongs to customer ${sub.customer_id}, not to ${customerId} or its parents`,
          { details: { field: 'subscriptionId' } },
        )
      }
    }
    if (getVault(db, id)) throw claError('CLA_ERR_EXISTS', `vault ${id} exists already`)
    if (subscriptionId !== null) requireVaultRoom(db, subscriptionId)
    const vault: Vault = {
      id,
      customer_id: customerId,
      subscription_id: subscriptionId,
      name,
      created_at: nowMicros(),
    }
    db.prepare(
      'INSERT INTO vaults (id, customer_id, subscription_id, name, created_at) VALUES (@id, @customer_id, @subscription_id, @name, @created_at)',
    ).run(vault)
    appendEvent(db, {
      kind: 'vault.create',
      actor: input.actor ?? 'system',
      outcome: 'ok',
      data: { vault: id, customer: customerId, subscription: subscriptionId, name },
    })
    return vault
  })
  return write.immediate()
}

/** Links a vault to another subscription (or none). Same ownership rule as createVault. */
export function setVaultSubscription(
  db: Db,
  vaultId: string,
  subscriptionId: string | null,
  opts: ActorOption = {},
): Vault {
  return db
    .transaction((): Vault => {
      const v = requireVault(db, vaultId)
      if (subscriptionId !== null) {
        const sub = db
          .prepare('SELECT customer_id FROM subscriptions WHERE id = ?')
          .get(subscriptionId) as { customer_id: string } | undefined
        if (!sub)
          throw claError('CLA_ERR_NOT_FOUND', `subscription ${subscriptionId} does not exist`)
        if (!isSelfOrAncestor(db, sub.customer_id, v.customer_id)) {
          throw claError(
            'CLA_ERR_INVALID_INPUT',
            `subscription ${subscriptionId} does not belong to the vault's customer or its parents`,
          )
        }
        // re-linking to the subscription it has already is no new vault for the plan
        if (v.subscription_id !== subscriptionId) requireVaultRoom(db, subscriptionId)
      }
      db.prepare('UPDATE vaults SET subscription_id = ? WHERE id = ?').run(subscriptionId, vaultId)
      appendEvent(db, {
        kind: 'vault.subscription',
        actor: opts.actor ?? 'system',
        outcome: 'ok',
        data: { vault: vaultId, subscription: subscriptionId },
      })
      return { ...v, subscription_id: subscriptionId }
    })
    .immediate()
}

/** Vaults with credential and key counts, optionally for one customer, ordered by id. */
export function listVaults(
  db: Db,
  opts: { customerId?: string; limit?: number; after?: string } = {},
): VaultSummary[] {
  const limit = Math.min(Math.max(Math.trunc(opts.limit ?? 100), 1), 1000)
  return db
    .prepare(
      `SELECT v.id, v.customer_id, v.subscription_id, v.name, v.created_at,
         (SELECT COUNT(DISTINCT p0) FROM credentials c WHERE c.vault_id = v.id) AS credentials,
         (SELECT COUNT(*) FROM vault_api_keys k WHERE k.vault_id = v.id AND k.revoked_at IS NULL) AS active_keys,
         s.status AS subscription_status
       FROM vaults v LEFT JOIN subscriptions s ON s.id = v.subscription_id
       WHERE (@customer IS NULL OR v.customer_id = @customer) AND v.id > @after
       ORDER BY v.id LIMIT @limit`,
    )
    .all({ customer: opts.customerId ?? null, after: opts.after ?? '', limit }) as VaultSummary[]
}

/**
 * Creates an API key for a vault. The returned `key` is the only time the secret exists
 * outside the caller: show it once, it cannot be recovered.
 */
export function createApiKey(
  db: Db,
  vaultId: string,
  opts: ActorOption = {},
): { id: string; key: string; vaultId: string } {
  return db
    .transaction(() => {
      requireVault(db, vaultId)
      const k = generateApiKey()
      db.prepare(
        'INSERT INTO vault_api_keys (id, vault_id, hash, created_at) VALUES (?, ?, ?, ?)',
      ).run(k.id, vaultId, k.hash, nowMicros())
      appendEvent(db, {
        kind: 'vault.key.create',
        actor: opts.actor ?? 'system',
        outcome: 'ok',
        data: { vault: vaultId, key: k.id },
      })
      return { id: k.id, key: k.key, vaultId }
    })
    .immediate()
}

/** Revokes a key (idempotent: revoking a revoked key keeps the first revocation time). */
export function revokeApiKey(db: Db, keyId: string, opts: ActorOption = {}): ApiKeyInfo {
  return db
    .transaction((): ApiKeyInfo => {
      const row = db
        .prepare('SELECT id, vault_id, created_at, revoked_at FROM vault_api_keys WHERE id = ?')
        .get(keyId) as ApiKeyInfo | undefined
      if (!row)
        throw claError('CLA_ERR_NOT_FOUND', `API key ${keyId} does not exist`, {
          details: { key: keyId },
        })
      if (row.revoked_at !== null) return row
      const at = nowMicros()
      db.prepare('UPDATE vault_api_keys SET revoked_at = ? WHERE id = ?').run(at, keyId)
      appendEvent(db, {
        kind: 'vault.key.revoke',
        actor: opts.actor ?? 'system',
        outcome: 'ok',
        data: { vault: row.vault_id, key: keyId },
      })
      return { ...row, revoked_at: at }
    })
    .immediate()
}

/** One API key's public facts (never its secret), or undefined. */
export function getApiKey(db: Db, keyId: string): ApiKeyInfo | undefined {
  return db
    .prepare('SELECT id, vault_id, created_at, revoked_at FROM vault_api_keys WHERE id = ?')
    .get(keyId) as ApiKeyInfo | undefined
}

export function listApiKeys(db: Db, vaultId: string): ApiKeyInfo[] {
  return db
    .prepare(
      'SELECT id, vault_id, created_at, revoked_at FROM vault_api_keys WHERE vault_id = ? ORDER BY created_at, id',
    )
    .all(vaultId) as ApiKeyInfo[]
}

/**
 * Checks a presented key (`clv_<id>_<secret>`). Throws CLA_ERR_API_KEY_INVALID for a
 * malformed, unknown or wrong key, CLA_ERR_API_KEY_REVOKED for a revoked one (said only
 * after the secret matched, so revocation leaks nothing to someone without the secret).
 */
export function authenticateVaultKey(db: Db, key: string): VaultAuth {
  const { id, secret } = parseApiKey(key)
  const row = db
    .prepare(
      `SELECT k.hash, k.revoked_at, v.id AS vault_id, v.customer_id
       FROM vault_api_keys k JOIN vaults v ON v.id = k.vault_id WHERE k.id = ?`,
    )
    .get(id) as
    { hash: string; revoked_at: number | null; vault_id: string; customer_id: string } | undefined
  if (!secretMatches(secret, row?.hash) || !row) {
    throw claError('CLA_ERR_API_KEY_INVALID', 'the API key is unknown or its secret does not match')
  }
  if (row.revoked_at !== null)
    throw claError('CLA_ERR_API_KEY_REVOKED', `API key ${id} was revoked`)
  return { keyId: id, vaultId: row.vault_id, customerId: row.customer_id }
}

/** Where a presented key came from, for the audit row of a refusal. */
export interface KeyCheckFacts {
  ip?: string
  route?: string
}

/**
 * Authenticates an `Authorization` header value. A refusal (no key, malformed, unknown,
 * wrong secret, revoked) is audited (kind `credential.auth`, outcome `refused`, reason
 * = the error code, with the client address and the key id it named, if any) before it
 * is thrown: guessing keys leaves a trail, and `onRefused` (the metric
 * `clavitor_credential_auth_refusals_total`) is told the code once the row is written.
 */
export function authenticateVaultRequest(
  db: Db,
  authorization: string | undefined,
  facts: KeyCheckFacts = {},
  onRefused?: (code: string) => void,
): VaultAuth {
  const key = bearerToken(authorization)
  try {
    if (key === undefined) {
      throw claError(
        'CLA_ERR_API_KEY_MISSING',
        'send the vault API key as `Authorization: Bearer clv_<id>_<secret>`',
      )
    }
    return authenticateVaultKey(db, key)
  } catch (err) {
    if (err instanceof ClavitorError) {
      const keyId = key === undefined ? undefined : apiKeyIdOf(key)
      appendEvent(db, {
        kind: 'credential.auth',
        actor: keyId ? `key:${keyId}` : 'unknown',
        outcome: 'refused',
        reason: err.code,
        ...(facts.ip ? { ip: facts.ip } : {}),
        ...(facts.route ? { route: facts.route } : {}),
      })
      onRefused?.(err.code)
    }
    throw err
  }
}

/** Throws CLA_ERR_SUBSCRIPTION_INACTIVE unless the vault's subscription is active/trialing. */
export function requireActiveSubscription(db: Db, vault: Vault): void {
  if (vault.subscription_id === null) {
    throw claError(
      'CLA_ERR_SUBSCRIPTION_INACTIVE',
      `vault ${vault.id} has no subscription; link one before registering`,
      {
        details: { vault: vault.id, status: null },
      },
    )
  }
  const sub = db
    .prepare('SELECT status FROM subscriptions WHERE id = ?')
    .get(vault.subscription_id) as { status: string } | undefined
  const status = sub?.status ?? null
  if (status === null || !ACTIVE_SUBSCRIPTION_STATUSES.includes(status)) {
    throw claError(
      'CLA_ERR_SUBSCRIPTION_INACTIVE',
      `subscription ${vault.subscription_id} of vault ${vault.id} is ${status ?? 'missing'}; only active or trialing subscriptions can register`,
      { details: { vault: vault.id, subscription: vault.subscription_id, status } },
    )
  }
}

export { requireVault }
