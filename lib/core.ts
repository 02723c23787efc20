// The core's library instance: everything a core process holds open for one data folder.
// Apps (server/, pop-agent/) and the CLI take one of these; they never open files themselves.
//
//   {data}/meta.db   SQLite metadata (lib/db)
//   {data}/store/    the WORM .cla store (lib/store) — the only folder rsync exposes
//   {data}/keys/     signing key and other secrets, outside the store root
//
// Each area adds its handle here (one field, one line in openCore/close).
import { Checkpointer } from './core-sync/checkpointer.js'
import { dataLayout, ensureDataDir } from './db/data-dir.js'
import { openDb, type Db } from './db/open.js'
import {
  StorageMonitor,
  type StorageHealth,
  type StorageHealthOptions,
} from './db/storage-health.js'
import { BlobStore, type Protection } from './store/index.js'
import { AuditLog } from './audit/log.js'
import type { Billing } from './billing/billing.js'
import { openBilling, paddleConfigFromEnv, type PaddleConfig } from './billing/config.js'
import { Admin } from './admin/admin.js'
import { Credentials, type CredentialsOptions } from './credentials/index.js'
import { Metrics } from './metrics.js'

/**
 * What {@link openCore} opens: the data folder and the settings of each area.
 */
export interface CoreOptions {
  /** The data folder; created if missing. */
  dataDir: string
  /** Paddle (lib/billing/config.ts): default from CLAVITOR_PADDLE_* env; unset = rows stay pending. */
  paddle?: PaddleConfig
  /** Store protection (lib/store): default $CLAVITOR_PROTECTION, else 'best-effort'. */
  protection?: Protection
  /** Credentials registry options (lib/credentials): maxWl3Bytes, default 65536. */
  credentials?: CredentialsOptions
  /** When the data folder counts as full for /healthz (lib/db/storage-health.ts). */
  storage?: StorageHealthOptions
}

/**
 * An opened core: one data folder's database, store, audit log, billing, admins and
 * credentials registry. Close it with {@link Core.close} when done.
 */
export interface Core {
  readonly dataDir: string
  readonly db: Db
  /** The WORM blob store (lib/store/store.ts), initialised on first open, sharing `db`. */
  readonly store: BlobStore
  /** The hash-chained audit log (lib/audit/log.ts): core.audit.append({ kind, actor, outcome, … }). */
  readonly audit: AuditLog
  /** The dual-write layer with Paddle (lib/billing/billing.ts; docs/billing.md). */
  readonly billing: Billing
  /** Admin humans, roles, WebAuthn ceremonies, sessions (lib/admin/admin.ts). */
  readonly admin: Admin
  /** Vaults, vault API keys, P0 → WL3 registry (lib/credentials; docs/api.md). */
  readonly credentials: Credentials
  /** Prometheus registry of this instance (lib/metrics.ts), served at /metrics. */
  readonly metrics: Metrics
  /**
   * Signs the replication log's checkpoints for the feed (lib/core-sync/checkpointer.ts);
   * `core serve` starts its idle timer.
   */
  readonly checkpoints: Checkpointer
  /** Room to write in the data folder (lib/db/storage-health.ts): what /healthz answers. */
  health(): { ok: boolean; storage: StorageHealth }
  /**
   * Stops the core's timers, closes the store (releasing its writer lock) and the database.
   */
  close(): Promise<void>
}

/**
 * The core's main paths inside `dataDir`: meta.db, the store root and the keys folder.
 */
export function dataPaths(dataDir: string) {
  return {
    db: dataLayout(dataDir).db,
    store: dataLayout(dataDir).store,
    keys: dataLayout(dataDir).keys.dir,
  }
}

/**
 * Opens (creating when missing) a core over `opts.dataDir`: migrates meta.db, opens or
 * initialises the store, and wires billing, admin and credentials to them.
 * @throws ClavitorError, e.g. CLA_ERR_STORE_LOCKED when another process writes the store.
 */
export async function openCore(opts: CoreOptions): Promise<Core> {
  const paths = dataPaths(opts.dataDir)
  ensureDataDir(opts.dataDir)
  const db = openDb(paths.db)
  const billing = openBilling(db, opts.paddle ?? paddleConfigFromEnv(), new AuditLog(db))
  const store = await BlobStore.init({
    dataDir: opts.dataDir,
    db,
    protection: opts.protection ?? (process.env.CLAVITOR_PROTECTION as Protection | undefined),
  })
  const storageMonitor = new StorageMonitor(opts.dataDir, opts.storage)
  const checkpoints = new Checkpointer(store)
  const metrics = new Metrics({ role: 'core', db })
  const onAuthRefused = opts.credentials?.onAuthRefused
  return {
    dataDir: opts.dataDir,
    db,
    store,
    audit: new AuditLog(db),
    billing,
    admin: new Admin(db),
    checkpoints,
    credentials: new Credentials(db, store, {
      ...opts.credentials,
      onAuthRefused: (code) => {
        metrics.credentialAuthRefusals.inc({ reason: code })
        onAuthRefused?.(code)
      },
    }),
    metrics,
    health() {
      const storage = storageMonitor.check(store.lastFullAt)
      return { ok: storage.ok, storage }
    },
    async close() {
      checkpoints.stop()
      await billing.stop()
      await store.close()
      db.close()
    },
  }
}
