/**
 * The Clavitor storage core, embedded: open a core or a POP over one data folder.
 *
 * ```ts
 * import { openCore } from 'clavitor-core'
 * const core = await openCore({ dataDir: '/var/lib/clavitor' })
 * try {
 *   console.log(core.store.status())
 * } finally {
 *   await core.close()
 * }
 * ```
 *
 * The parts an embedder uses on their own have subpaths of their own:
 * `clavitor-core/store`, `/format`, `/replication`, `/billing`, `/audit`, `/server`,
 * `/pop-agent`. Nothing else of the package is public (docs/embedding.md).
 *
 * @packageDocumentation
 */
export { openCore, dataPaths, type Core, type CoreOptions } from '../lib/core.js'
export { openPop, popPaths, type Pop, type PopOptions } from '../lib/pop.js'
export { restoreCore, type RestoreOptions, type RestoreReport } from '../lib/restore.js'
export {
  ClavitorError,
  ERRORS,
  isClavitorError,
  type ErrorCode,
  type ErrorSpec,
} from '../lib/errors.js'
export { ManualClock, systemClock, type Clock } from '../lib/clock.js'
export { createLogger, silentLogger, type Logger, type LogOptions } from '../lib/log.js'
export type { Admin } from '../lib/admin/admin.js'
export type { Credentials, CredentialsOptions } from '../lib/credentials/index.js'
export type { RegistryOptions } from '../lib/credentials/registry.js'
export type { Metrics } from '../lib/metrics.js'
export type { StorageHealth, StorageHealthOptions } from '../lib/db/storage-health.js'
export type { TreeWatch } from '../lib/pop-sync/watch.js'
export type { AdminRow } from '../lib/admin/humans.js'
export type { AdminSession, IssuedSession } from '../lib/admin/sessions.js'
export type { IssuedToken } from '../lib/admin/setup-links.js'
export type { Actor, RequestFacts } from '../lib/admin/context.js'
export type { Permission } from '../lib/admin/roles.js'
export type { ApiTokenInfo } from '../lib/admin/api-tokens.js'
export type { Reach, Scope } from '../lib/admin/scope.js'
export type {
  CredentialRegistry,
  CredentialSummary,
  Page,
  RegisteredCredential,
  Wl3,
} from '../lib/credentials/registry.js'
export type {
  ActorOption,
  ApiKeyInfo,
  KeyCheckFacts,
  Vault,
  VaultAuth,
  VaultSummary,
} from '../lib/credentials/vaults.js'
export type { SyncStatus } from '../lib/credentials/sync-status.js'
export type { VaultStatus } from '../lib/credentials/vault-status.js'
export type { TreeAlarm } from '../lib/pop-sync/watch.js'
export type { TreeCheckResult } from '../lib/pop-sync/tree-check.js'
export type { RegistryStore } from '../lib/credentials/registry.js'
export type { CredentialSyncStatus, PopPosition } from '../lib/credentials/sync-status.js'
export type { TreeFinding } from '../lib/pop-sync/tree-check.js'
