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

export type CredentialsOptions = RegistryOptions

export class Credentials {
  readonly registry: CredentialRegistry

  constructor(
    readonly db: Db,
    store: RegistryStore,
    opts: CredentialsOptions = {},
  ) {
    this.registry = new CredentialRegistry(db, store, opts)
  }

  get maxWl3Bytes(): number {
    return this.registry.maxWl3Bytes
  }

  // --- vaults and keys (used by the admin UI and `clavitor vault`) ---
  createVault(
    input: { customerId: string; subscriptionId?: string | null; name: string } & ActorOption,
  ): Vault {
    return createVault(this.db, input)
  }
  getVault(vaultId: string): Vault | undefined {
    return getVault(this.db, vaultId)
  }
  setVaultSubscription(vaultId: string, subscriptionId: string | null, opts?: ActorOption): Vault {
    return setVaultSubscription(this.db, vaultId, subscriptionId, opts)
  }
  listVaults(opts?: { customerId?: string; limit?: number; after?: string }): VaultSummary[] {
    return listVaults(this.db, opts)
  }
  createApiKey(vaultId: string, opts?: ActorOption): { id: string; key: string; vaultId: string } {
    return createApiKey(this.db, vaultId, opts)
  }
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
  listApiKeys(vaultId: string): ApiKeyInfo[] {
    return listApiKeys(this.db, vaultId)
  }
  authenticateVaultKey(key: string): VaultAuth {
    return authenticateVaultKey(this.db, key)
  }
  /** An `Authorization` header value; refusals are audited (see vaults.ts). */
  authenticateVaultRequest(authorization: string | undefined, facts?: KeyCheckFacts): VaultAuth {
    return authenticateVaultRequest(this.db, authorization, facts)
  }

  // --- credentials ---
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
  listCredentials(
    customerId: string,
    opts?: { limit?: number; after?: string },
  ): Page<CredentialSummary> {
    return this.registry.list(customerId, opts)
  }
  latestWl3(customerId: string, p0: string, opts?: { version?: number }): Promise<Wl3> {
    return this.registry.latestWl3(customerId, p0, opts)
  }
  syncStatus(customerId: string, opts?: { limit?: number; after?: string }): SyncStatus {
    return syncStatus(this.db, customerId, opts)
  }
}
