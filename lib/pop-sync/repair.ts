// Repair of a POP's own damaged blobs. The cursor is already past them, so the pull alone
// would never fetch them again: damaged paths go into a repair queue (meta key
// `sync.repair`) from the quick check run before each pull, a full verify, the tree
// watcher and the lookup path; each run re-fetches them by path from the core, verifies
// them against the POP's index row and links them back into place.
//
// The +i rule: the POP agent clears the immutable flag only on a file of its OWN store,
// only when that file is in its index AND fails verification against its index row. It
// never deletes it: the damaged file is moved to {data}/quarantine/ (evidence), the p0
// folder is re-sealed +a at once, and the only thing that may take the name again is a
// core-signed file whose header equals the index row.
import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, rm } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { AuditEventInput } from '../audit/log.js'
import type { Db } from '../db/open.js'
import { claError, isClavitorError } from '../errors.js'
import type { BlobInfo, BlobStore } from '../store/index.js'
import { verifyCla } from '../store/format.js'
import { runRsync } from './rsync.js'
import type { RsyncSettings } from './pull.js'
import { getMeta, K_LAST_CHECK, setMeta } from './state.js'
import { checkTree, type TreeCheckResult } from './tree-check.js'

export const K_REPAIR = 'sync.repair'

export type RepairQueue = Record<string, string>

export function pendingRepairs(db: Db): RepairQueue {
  const v = getMeta(db, K_REPAIR)
  if (!v) return {}
  try {
    return JSON.parse(v) as RepairQueue
  } catch {
    return {}
  }
}

/** Adds paths (with a reason) to the repair queue. */
export function queueRepair(db: Db, items: ReadonlyArray<{ path: string; reason: string }>): void {
  if (items.length === 0) return
  db.transaction(() => {
    const q = pendingRepairs(db)
    for (const it of items) q[it.path] = it.reason
    setMeta(db, K_REPAIR, JSON.stringify(q))
  }).immediate()
}

function dropRepairs(db: Db, paths: readonly string[]): void {
  const q = pendingRepairs(db)
  for (const p of paths) delete q[p]
  setMeta(db, K_REPAIR, Object.keys(q).length ? JSON.stringify(q) : null)
}

export { K_LAST_CHECK }

/**
 * Cheap check of the whole tree before each pull (tree-check.ts): one stat per indexed file
 * and p0 folder; files changed since the previous check (ctime) are read and verified, so a
 * same-size edit is found by the next run, not only by a full verify. Queues missing and
 * damaged blobs; returns them and the foreign entries (the caller alarms).
 */
export async function quickCheck(
  store: BlobStore,
  opts: { signal?: AbortSignal } = {},
): Promise<TreeCheckResult> {
  const started = Date.now()
  const since = Number(getMeta(store.db, K_LAST_CHECK) ?? 0)
  const r = await checkTree(store, {
    sinceMs: Number.isFinite(since) ? since : 0,
    ...(opts.signal ? { signal: opts.signal } : {}),
  })
  queueRepair(store.db, r.bad)
  setMeta(store.db, K_LAST_CHECK, String(started))
  return r
}

/** Full verify (every file's hash and signature); queues missing and corrupt indexed files. */
export async function fullVerify(
  store: BlobStore,
): Promise<Array<{ path: string; reason: string }>> {
  const rep = await store.verify()
  const indexed = new Set(store.index.paths())
  const bad = [
    ...rep.missing.map((path) => ({ path, reason: 'missing' })),
    ...rep.corrupt
      .filter((c) => indexed.has(c.path))
      .map((c) => ({ path: c.path, reason: c.code })),
  ]
  queueRepair(store.db, bad)
  // Intact files and folders that lost their flags are sealed again (+i files, +a folders);
  // damaged ones are sealed by their repair.
  if (store.sealing && rep.unsealed.length) {
    const damaged = new Set(bad.map((b) => b.path))
    const files = rep.unsealed.filter(
      (p) => p.endsWith('.cla') && indexed.has(p) && !damaged.has(p),
    )
    const dirs = rep.unsealed.filter((p) => !p.endsWith('.cla'))
    await store.reseal(files, dirs)
  }
  return bad
}

export interface RepairOptions {
  popId: string
  store: BlobStore
  rsync: RsyncSettings
  /** Plain folder on the store's filesystem. */
  stagingDir: string
  signal?: AbortSignal
  audit?: (ev: AuditEventInput) => void
  warn?: (msg: string, data?: Record<string, unknown>) => void
}

/** What one pass over the repair queue did (paths relative to the store root). */
export interface RepairResult {
  /** Blobs fetched again from the core, verified and put back. */
  repaired: string[]
  /** Queued but found intact (dropped from the queue). */
  intact: string[]
  /** Blobs not repaired (they stay queued), with the error code and message. */
  failed: Array<{ path: string; code: string; message: string }>
}

async function isIntact(store: BlobStore, row: BlobInfo): Promise<boolean> {
  try {
    await store.readFile(row)
    return true
  } catch {
    return false
  }
}

/** Moves a damaged file of this store aside (the +i rule above), re-sealing its folder. */
async function quarantine(o: RepairOptions, row: BlobInfo): Promise<void> {
  const dest = await o.store.quarantine(row)
  o.audit?.({
    kind: 'sync.repair',
    actor: o.popId,
    outcome: 'alarm',
    reason: 'quarantined',
    data: { path: row.path, moved_to: dest },
  })
}

/** Re-fetches every queued path from the core and puts a verified copy back in place. */
export async function repairQueued(o: RepairOptions): Promise<RepairResult> {
  const res: RepairResult = { repaired: [], intact: [], failed: [] }
  const db = o.store.db
  const q = pendingRepairs(db)
  const paths = Object.keys(q).sort()
  if (paths.length === 0) return res
  const todo: BlobInfo[] = []
  const gone: string[] = []
  for (const p of paths) {
    const row = o.store.index.byPath(p)
    if (!row) {
      gone.push(p)
      continue
    }
    const file = join(o.store.root, p)
    if (existsSync(file)) {
      if (await isIntact(o.store, row)) {
        res.intact.push(p)
        continue
      }
      await quarantine(o, row)
    }
    todo.push(row)
  }
  if (gone.length || res.intact.length)
    db.transaction(() => dropRepairs(db, [...gone, ...res.intact])).immediate()
  if (todo.length === 0) return res

  const dir = join(o.stagingDir, 'repair')
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })
  let fetchErr: unknown = null
  try {
    await runRsync(
      {
        ...o.rsync, // source, timeout, rsync binary, extra args, env: as configured
        files: todo.map((r) => r.path),
        listFile: join(o.stagingDir, 'repair.list'),
        dest: dir,
        signal: o.signal,
      },
      { partial: true },
    )
  } catch (err) {
    if (isClavitorError(err, 'CLA_ERR_SYNC_ABORTED')) throw err
    fetchErr = err
  }
  for (const row of todo) {
    const staged = join(dir, row.path)
    if (!existsSync(staged)) {
      const e = fetchErr as { code?: string; message?: string } | null
      res.failed.push({
        path: row.path,
        code: e?.code ?? 'CLA_ERR_SYNC_PARTIAL',
        message: e?.message ?? 'did not arrive from the core',
      })
      continue
    }
    try {
      // Check before ingest so a bad copy from the core is named precisely.
      verifyCla(await readFile(staged), o.store.trustedKeys, row.path)
      await o.store.ingest([{ file: staged, expect: row }], {
        inTransaction: (d) => dropRepairs(d, [row.path]),
      })
      res.repaired.push(row.path)
      o.audit?.({
        kind: 'sync.repair',
        actor: o.popId,
        outcome: 'ok',
        reason: 'repaired',
        data: { path: row.path },
      })
    } catch (err) {
      const e = isClavitorError(err)
        ? err
        : claError('CLA_ERR_INTERNAL', (err as Error).message, { cause: err })
      res.failed.push({ path: row.path, code: e.code, message: e.message })
    }
  }
  await rm(dir, { recursive: true, force: true })
  // The folders of repaired blobs are sealed again (+a) whatever an intruder left them as.
  if (res.repaired.length) await o.store.reseal([], [...new Set(res.repaired.map(dirname))])
  if (res.failed.length)
    o.warn?.(`repair: ${res.failed.length} blob(s) could not be repaired yet`, {
      failed: res.failed.slice(0, 5),
    })
  return res
}
