// Restoring a core whose disk died (docs/operations.md "Disaster recovery"): meta.db from
// its Litestream replica (lib/db/replica.ts), the store from any POP (every file is signed
// by the core's key, so a POP is a full, verifiable copy), the keys from their offline
// backup. Then the store is made whole and consistent with the database:
//   1. files the POP holds that meta.db does not index (written after the replica's last
//      sync: within its ~1 s) are indexed, unpublished (their registrations' rows are gone);
//   2. rows meta.db indexes whose file the POP did not have yet (written since that POP's
//      last pull) are forgotten, with the registrations that name them: those devices
//      register again;
//   3. every file is verified (structure, sha256, the core's Ed25519 signature);
//   4. when anything was forgotten the store went back in time: its generation goes up, so
//      every POP re-baselines (verifies what it holds against the feed) instead of trusting
//      a cursor past the core's newest blob. When nothing was lost, POPs just continue.
// One audit event (`core.restore`) records it.
import { cpSync, existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { appendEvent } from './audit/log.js'
import { forgetRegistrations } from './credentials/registry.js'
import { dataLayout, ensureDataDir } from './db/data-dir.js'
import { getMeta } from './db/meta.js'
import { openDb } from './db/open.js'
import { restoreFromReplica } from './db/replica.js'
import { claError } from './errors.js'
import { blobIndex } from './store/blob-index.js'
import { BlobStore, restoreIdentityFile, type Protection } from './store/index.js'

/**
 * Where {@link restoreCore} restores from: the meta.db replica, a POP's store, the keys.
 */
export interface RestoreOptions {
  /** The new data folder (empty, or holding only keys/). */
  dataDir: string
  /** The meta.db replica: an absolute path or a URL (replicaUrl). */
  replica: string
  /** A POP's store folder ({pop data}/store) or an rsync source (rsync://…/, host:path/). */
  storeFrom: string
  /** The keys' offline backup (a copy of the old {data}/keys); else {data}/keys must hold them. */
  keysFrom?: string
  /** meta.db as of this RFC 3339 time instead of the newest. */
  timestamp?: string
  protection?: Protection
  /** Who ran it, for the audit row. Default 'cli'. */
  actor?: string
}

/**
 * What a restore did: rows restored, files copied and indexed, what it forgot, the
 * store generation before and after (docs/operations.md, "Disaster recovery").
 */
export interface RestoreReport {
  data_dir: string
  replica: string
  store_from: string
  /** .cla files copied from the POP. */
  files: number
  /** Of those, files meta.db did not index: indexed now, unpublished. */
  indexed_unpublished: number
  /** Index rows whose file the POP did not have: forgotten, with their registrations. */
  forgotten: { blobs: number; registrations: number; newest_forgotten_at: number | null }
  /** Files that failed verification (kept out of the index by the rebuild). */
  corrupt: number
  generation: { before: number; after: number }
  ms: { meta: number; store: number; verify: number; total: number }
}

/** Copies a POP's store tree: a local folder or an rsync source, contents only. */
async function copyStore(from: string, to: string): Promise<void> {
  const src = from.endsWith('/') ? from : `${from}/`
  const r = await execa('rsync', ['-a', '--exclude=.clavitor-*', src, `${to}/`], { reject: false })
  if (r.exitCode !== 0)
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `cannot copy the store from ${from}: ${r.stderr.trim()}`,
    )
}

/**
 * Rebuilds a core's data folder from its Litestream replica and a POP's store; refuses
 * over a live core. Writes one `core.restore` audit event.
 */
export async function restoreCore(o: RestoreOptions): Promise<RestoreReport> {
  const t0 = Date.now()
  const d = dataLayout(o.dataDir)
  if (existsSync(d.db) || existsSync(d.storeIdentity))
    throw claError(
      'CLA_ERR_EXISTS',
      `${o.dataDir} holds a core already; restore into an empty folder`,
    )
  ensureDataDir(o.dataDir)
  if (o.keysFrom) cpSync(o.keysFrom, d.keys.dir, { recursive: true, errorOnExist: false })
  if (!existsSync(d.keys.signingKey))
    throw claError(
      'CLA_ERR_RESTORE_NO_KEYS',
      `${d.keys.signingKey} is missing: restore {data}/keys from its offline backup (--keys-from)`,
    )

  await restoreFromReplica(o.replica, d.db, o.timestamp ? { timestamp: o.timestamp } : {})
  const tMeta = Date.now()
  mkdirSync(d.store, { recursive: true })
  await copyStore(o.storeFrom, d.store)
  const tStore = Date.now()

  const db = openDb(d.db)
  let store: BlobStore | undefined
  try {
    const before = Number(getMeta(db, 'store_generation') ?? 0)
    // rows whose file the POP did not have: the store went back in time (they are
    // forgotten below, with their registrations)
    const missing = blobIndex(db)
      .paths()
      .filter((p) => !existsSync(join(d.store, p)))
    const identity = restoreIdentityFile(o.dataDir, db, { bumpGeneration: missing.length > 0 })
    store = await BlobStore.open({
      dataDir: o.dataDir,
      db,
      ...(o.protection ? { protection: o.protection } : {}),
      onWarning: () => {},
    })
    let registrations = 0
    const forgotten = store.forgetMissing((gone) => {
      registrations = forgetRegistrations(
        db,
        gone.map((b) => b.seq),
      )
    })
    const rebuilt = await store.rebuildIndex()
    const tVerify0 = Date.now()
    const verify = await store.verify()
    const report: RestoreReport = {
      data_dir: o.dataDir,
      replica: o.replica,
      store_from: o.storeFrom,
      files: verify.files,
      indexed_unpublished: rebuilt.indexed,
      forgotten: {
        blobs: forgotten.length,
        registrations,
        newest_forgotten_at: forgotten.length ? forgotten[forgotten.length - 1]!.created_at : null,
      },
      corrupt: verify.corrupt.length + rebuilt.corrupt.length,
      generation: { before, after: identity.generation },
      ms: {
        meta: tMeta - t0,
        store: tStore - tMeta,
        verify: Date.now() - tVerify0,
        total: Date.now() - t0,
      },
    }
    appendEvent(db, {
      kind: 'core.restore',
      actor: o.actor ?? 'cli',
      outcome: report.corrupt > 0 ? 'alarm' : 'ok',
      data: { ...report, ms: undefined },
    })
    return report
  } finally {
    await store?.close()
    db.close()
  }
}
