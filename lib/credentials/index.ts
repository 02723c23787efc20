// The credentials handle on the core instance (`core.credentials`): vaults, vault API
// keys and the P0 → WL3 registry, in one object over the core's db and store.
// Decisions only; the HTTP face is server/routes/credentials.ts.
import type { Db } from '../db/open.js'
import {
  CredentialRegistry,
  type CredentialSummary,
  type Page,
  type RegisteredCredential,
  type RegistryOptions,
  type RegistryStore,
  type Wl3,
} from './registry.js'
import { syncStatus, type SyncStatus } from './sync-status.js'
import { vaultStatus, type VaultStatus } from './vault-status.js'
import {
  authenticateVaultKey,
  authenticateVaultRequest,
  createApiKey,
  createVault,
  getApiKey,
  getVault,
  listApiKeys,
  listVaults,
  revokeApiKey,
  setVaultSubscription,
  type ActorOption,
  type KeyCheckFacts,
  type ApiKeyInfo,
  type Vault,
  type VaultAuth,
  type VaultSummary,
} from './vaults.js'

export * from './keys.js'
export * from './limits.js'
export * from './vault-status.js'
export * from './registry.js'
export * from './sync-status.js'
export * from './vaults.js'

/** Options of {@link Credentials}: those of the registry (maxWl3Bytes), and a refusal hook. */
export type CredentialsOptions = RegistryOptions & {
  /**
   * Told the error code of each vault API key check refused, once its `credential.auth`
   * audit row is written (the core counts them: clavitor_credential_auth_refusals_total).
   * Must not throw.
   */
  onAuthRefused?: (code: string) => void
}

/**
 * Vaults, vault API keys and the P0 → WL3 registry of one core (`core.credentials`), over its
 * database and store. The HTTP face is server/routes/credentials.ts.
 */
export class Credentials {
  /** The P0 → WL3 registry. */
  readonly registry: CredentialRegistry
  private readonly onAuthRefused: ((code: string) => void) | undefined

  constructor(
    readonly db: Db,
    store: RegistryStore,
    opts: CredentialsOptions = {},
  ) {
    const { onAuthRefused, ...registry } = opts
    this.registry = new CredentialRegistry(db, store, registry)
    this.onAuthRefused = onAuthRefused
  }

  /** Largest WL3 accepted, in bytes. */
  get maxWl3Bytes(): number {
    return this.registry.maxWl3Bytes
  }

  // --- vaults and keys (used by the admin UI and `clavitor vault`) ---
  /**
   * Creates a vault for a customer, optionally linked to a subscription of the customer or of one
   * of its parents. Throws CLA_ERR_NOT_FOUND, CLA_ERR_INVALID_INPUT or CLA_ERR_PLAN_VAULT_LIMIT.
   */
  createVault(
    input: { customerId: string; subscriptionId?: string | null; name: string } & ActorOption,
  ): Vault {
    return createVault(this.db, input)
  }
  /** The vault, or undefined. */
  getVault(vaultId: string): Vault | undefined {
    return getVault(this.db, vaultId)
  }
  /**
   * Links the vault to another subscription, or to none (null); same rules as createVault. Audited.
   */
  setVaultSubscription(vaultId: string, subscriptionId: string | null, opts?: ActorOption): Vault {
    return setVaultSubscription(this.db, vaultId, subscriptionId, opts)
  }
  /**
   * Vaults with their counts, optionally of one customer, by id; `limit` default 100, at most
   * 1000; `after`: the last id of the previous page.
   */
  listVaults(opts?: { customerId?: string; limit?: number; after?: string }): VaultSummary[] {
    return listVaults(this.db, opts)
  }
  /** Issues an API key for the vault. `key` is the secret, returned this once only. Audited. */
  createApiKey(vaultId: string, opts?: ActorOption): { id: string; key: string; vaultId: string } {
    return createApiKey(this.db, vaultId, opts)
  }
  /**
   * Revokes a key; revoking it again keeps the first time. CLA_ERR_NOT_FOUND for an unknown key.
   */
  revokeApiKey(keyId: string, opts?: ActorOption): ApiKeyInfo {
    return revokeApiKey(this.db, keyId, opts)
  }
  /** The vault's subscription, plan, limits and usage (GET /api/v1/vault/status). */
  vaultStatus(vaultId: string): VaultStatus {
    return vaultStatus(this.db, vaultId)
  }
  /** One API key's public facts (never its secret), or undefined. */
  getApiKey(keyId: string): ApiKeyInfo | undefined {
    return getApiKey(this.db, keyId)
  }
  /** The vault's keys, revoked ones included, oldest first (never their secrets). */
  listApiKeys(vaultId: string): ApiKeyInfo[] {
    return listApiKeys(this.db, vaultId)
  }
  /**
   * Checks a presented key `clv_<id>_<secret>` (not audited; see authenticateVaultRequest).
   * Throws CLA_ERR_API_KEY_INVALID or CLA_ERR_API_KEY_REVOKED.
   */
  authenticateVaultKey(key: string): VaultAuth {
    return authenticateVaultKey(this.db, key)
  }
  /** An `Authorization` header value; refusals are audited (see vaults.ts) and told to `onAuthRefused`. */
  authenticateVaultRequest(authorization: string | undefined, facts?: KeyCheckFacts): VaultAuth {
    return authenticateVaultRequest(this.db, authorization, facts, this.onAuthRefused)
  }

  // --- credentials ---
  /** Registers a WL3 for a P0 through a vault (see CredentialRegistry.register). */
  registerCredential(input: {
    vault: string
    p0: string
    wl3: Buffer
    actor?: string
    idempotencyKey?: string
  }): Promise<RegisteredCredential> {
    return this.registry.register({
      vaultId: input.vault,
      p0: input.p0,
      wl3: input.wl3,
      ...(input.actor ? { actor: input.actor } : {}),
      ...(input.idempotencyKey !== undefined ? { idempotencyKey: input.idempotencyKey } : {}),
    })
  }
  /**
   * A customer's credentials, one entry per P0, by P0; `after`: the `next` of the previous page.
   */
  listCredentials(
    customerId: string,
    opts?: { limit?: number; after?: string },
  ): Page<CredentialSummary> {
    return this.registry.list(customerId, opts)
  }
  /**
   * The WL3 of a customer's P0, latest or `version`; CLA_ERR_NOT_FOUND for another customer's P0.
   */
  latestWl3(customerId: string, p0: string, opts?: { version?: number }): Promise<Wl3> {
    return this.registry.latestWl3(customerId, p0, opts)
  }
  /** Which POPs hold the latest version of each of the customer's P0s, page by page. */
  syncStatus(customerId: string, opts?: { limit?: number; after?: string }): SyncStatus {
    return syncStatus(this.db, customerId, opts)
  }
}
