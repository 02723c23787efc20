// The files checked against the index, and the index rebuilt from the files (the .cla
// files are the truth): verify (missing, corrupt, unindexed, unsealed), rebuildLocked
// (index every valid file that has no row), and the writer's start (ensureWriter: take the
// writer lock once and, after a dead writer or with a fresh meta.db, rebuild first).
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import fg from 'fast-glob'
import { claError } from '../errors.js'
import { INFO_COLS, rowToInfo, type BlobInfo } from './blob-index.js'
import { insertRow, sealBatch } from './batch.js'
import { checkExpect, infoOf, problemOf, type VerifyProblem } from './checks.js'
import { exclusive, isSealing, stmt, warnOnce, type StoreContext } from './context.js'
import { mapLimit } from './durable.js'
import { parseBlobPath, verifyCla } from './format.js'
import { acquireWriterLock, liveLockHolder, type WriterLock } from './lock.js'
import { SHARDS } from './open.js'
import { shardOf } from './p0.js'
import { hasFlag, readAttrs } from './seal.js'
import { CHAIN_GENESIS, chainNext, fileSha256 } from './chain.js'
import { fillChain, rechainFrom } from './rechain.js'
import { cleanStaging } from './staging.js'

/**
 * What BlobStore.verify found: every file and index row checked (paths relative to the store root).
 */
export interface VerifyReport {
  /**
   * True when nothing is missing, corrupt, unindexed or unsealed (recoverable files and their
   * folders not counted).
   */
  ok: boolean
  /** .cla files found on disk. */
  files: number
  /** Index rows. */
  indexed: number
  /** Index rows whose file is absent. */
  missing: string[]
  /** Files that fail structure, hash, signature, or disagree with their index row. */
  corrupt: VerifyProblem[]
  /** Files (valid or not) with no index row. */
  unindexed: string[]
  /**
   * Of those, valid signed files whose header matches their name: a live writer's files not
   * indexed yet, or a dead writer's leftovers (the next open or write indexes them,
   * unpublished). Not damage: `ok` does not count them.
   */
  recoverable: string[]
  /** Files without +i and folders without +a, when sealing is in force. */
  unsealed: string[]
  /** False when sealing is not in force, so `unsealed` was not checked. */
  sealChecked: boolean
  /** The replication log's chain (lib/store/chain.ts) recomputed over the published rows. */
  chain: {
    /** Every published row's stored chain value is the recomputed one. */
    ok: boolean
    /** Published rows checked. */
    checked: number
    /** The chain value after the newest published row (null when broken). */
    head: string | null
    /** The first row whose value differs or is missing, or null. */
    firstBad: { seq: number; path: string } | null
  }
}

/** What BlobStore.rebuildIndex did. */
export interface RebuildReport {
  /** .cla files found on disk. */
  scanned: number
  /** Of those, files that already had an index row. */
  alreadyIndexed: number
  /** Files indexed by this rebuild. */
  indexed: number
  /** Unindexed files that failed verification (left unindexed). */
  corrupt: VerifyProblem[]
  /** Valid files whose seq or (created_at, seq) is taken by another indexed file. */
  conflicts: string[]
}

/** Every blob path under the root ({shard}/{p0}/{name}.cla; fast-glob over the tree). */
export async function listFiles(ctx: StoreContext): Promise<string[]> {
  return fg('*/*/*.cla', {
    cwd: ctx.root,
    onlyFiles: true,
    dot: false,
    followSymbolicLinks: false,
  })
}

/** Checks every file and row: missing, corrupt (hash/signature/header), unindexed, unsealed. */
export async function verifyStore(ctx: StoreContext): Promise<VerifyReport> {
  const files = await listFiles(ctx)
  const rows = (stmt(ctx, `SELECT ${INFO_COLS} FROM blobs`).all() as Record<string, unknown>[]).map(
    rowToInfo,
  )
  const byPath = new Map(rows.map((r) => [r.path, r]))
  const onDisk = new Set(files)
  const missing = rows.filter((r) => !onDisk.has(r.path)).map((r) => r.path)
  const unindexed = files.filter((f) => !byPath.has(f))
  const corrupt: VerifyProblem[] = []
  const recoverable: string[] = []
  await mapLimit(files, 16, async (rel) => {
    try {
      const parsed = parseBlobPath(rel)
      if (!parsed) throw claError('CLA_ERR_BAD_FORMAT', `${rel}: not a blob path`)
      const bytes = await readFile(join(ctx.root, rel))
      const d = verifyCla(bytes, ctx.ring, rel)
      const row = byPath.get(rel)
      checkExpect(d, rel, row ?? { p0: parsed.p0, created_at: parsed.createdAt })
      if (row?.file_sha256 && fileSha256(bytes) !== row.file_sha256) {
        throw claError('CLA_ERR_BAD_HASH', `${rel}: file sha256 differs from the index row`)
      }
      if (!row) recoverable.push(rel)
    } catch (err) {
      corrupt.push(problemOf(rel, err))
    }
  })
  const sealing = isSealing(ctx)
  let unsealed: string[] = []
  if (sealing) {
    const dirs = [...new Set(files.map((f) => f.slice(0, f.lastIndexOf('/'))))]
    const targets = [...files, ...dirs, ...SHARDS]
    const attrs = await readAttrs(targets.map((t) => join(ctx.root, t)))
    unsealed = targets.filter(
      (t, i) => !hasFlag(attrs.get(join(ctx.root, t)), i < files.length ? 'i' : 'a'),
    )
  }
  corrupt.sort((a, b) => a.path.localeCompare(b.path))
  const chain = checkChain(ctx)
  return {
    // a recoverable file (valid, not indexed yet) is a writer's, not damage; its folder or the
    // file itself may be unsealed until its batch seals: not counted either
    ok:
      chain.ok &&
      missing.length +
        corrupt.length +
        (unindexed.length - recoverable.length) +
        unsealed.filter((u) => !recoverable.some((r) => r === u || r.startsWith(u + '/')))
          .length ===
        0,
    files: files.length,
    indexed: rows.length,
    missing: missing.sort(),
    corrupt,
    unindexed: unindexed.sort(),
    recoverable: recoverable.sort(),
    unsealed: unsealed.sort(),
    sealChecked: sealing,
    chain,
  }
}

/**
 * The replication log's chain recomputed over the published rows, in feed order, from their
 * file_sha256 (which the file checks above compared with the files): the first row whose
 * stored value differs, or that lacks one, breaks it.
 */
function checkChain(ctx: StoreContext): VerifyReport['chain'] {
  const rows = stmt(
    ctx,
    'SELECT seq, created_at, path, file_sha256, chain FROM blobs WHERE published = 1 ORDER BY created_at, seq',
  ).all() as Array<{
    seq: number
    created_at: number
    path: string
    file_sha256: string | null
    chain: string | null
  }>
  let c = CHAIN_GENESIS
  for (const r of rows) {
    c = r.file_sha256 ? chainNext(c, { ...r, file_sha256: r.file_sha256 }) : ''
    if (!c || r.chain !== c) {
      return { ok: false, checked: rows.length, head: null, firstBad: { seq: r.seq, path: r.path } }
    }
  }
  return { ok: true, checked: rows.length, head: c, firstBad: null }
}

/** Indexes every valid .cla file that has no index row. The caller holds the writer lock. */
export async function rebuildLocked(ctx: StoreContext): Promise<RebuildReport> {
  const files = await listFiles(ctx)
  const indexed = new Set(
    (stmt(ctx, 'SELECT path FROM blobs').all() as Array<{ path: string }>).map((r) => r.path),
  )
  const todo = files.filter((f) => !indexed.has(f))
  const corrupt: VerifyProblem[] = []
  const found: BlobInfo[] = []
  await mapLimit(todo, 16, async (rel) => {
    try {
      const parsed = parseBlobPath(rel)
      if (!parsed) throw claError('CLA_ERR_BAD_FORMAT', `${rel}: not a blob path`)
      const d = verifyCla(await readFile(join(ctx.root, rel)), ctx.ring, rel)
      checkExpect(d, rel, { p0: parsed.p0, created_at: parsed.createdAt })
      found.push(infoOf(d, rel))
    } catch (err) {
      corrupt.push(problemOf(rel, err))
    }
  })
  found.sort((a, b) => a.created_at - b.created_at || a.seq - b.seq)
  // their folders, and every shard folder and the root: a bulk ingest that died mid-move
  // may have left some of those without +a (lib/store/tree-ingest.ts); +a again is harmless
  const dirs = [
    ...new Set(found.map((f) => join(ctx.root, shardOf(f.p0), f.p0))),
    ...SHARDS.map((s) => join(ctx.root, s)),
    ctx.root,
  ]
  const sealed = await sealBatch(
    ctx,
    found.map((f) => join(ctx.root, f.path)),
    dirs,
  )
  const conflicts: string[] = []
  const inserted: BlobInfo[] = []
  // Which found files are published: on a POP every file came from the core's feed (it was
  // published there); on a core no put acknowledged a file that has no row (its writer died
  // between link and index, or its caller's rows failed), so it stays unpublished — unless
  // a fresh meta.db adopted the store and nothing else tells which puts were acknowledged.
  const published = ctx.identity.role === 'pop' || ctx.adopted
  ctx.db.transaction(() => {
    for (const i of found) {
      try {
        insertRow(ctx, i, sealed.sealed, published) // chained below, wherever they fall
        inserted.push(i)
        ctx.lastSeq = Math.max(ctx.lastSeq, i.seq)
        ctx.lastCreatedAt = Math.max(ctx.lastCreatedAt, i.created_at)
      } catch (err) {
        if ((err as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT')) conflicts.push(i.path)
        else throw err
      }
    }
    if (published && inserted.length > 0) fillChain(ctx)
  })()
  if (published) ctx.published.emit(inserted)
  corrupt.sort((a, b) => a.path.localeCompare(b.path))
  return {
    scanned: files.length,
    alreadyIndexed: files.length - todo.length,
    indexed: inserted.length,
    corrupt,
    conflicts,
  }
}

/** What opening a store recovered (BlobStore.healed): see healAtOpen. */
export interface HealReport {
  /** A fresh meta.db adopted the store: the index was rebuilt from the files. */
  adopted: boolean
  /** Files indexed by this recovery (published on a POP or when adopted, else unpublished). */
  recovered: number
  /** Files that failed verification (left for `clavitor store verify`). */
  corrupt: number
}

/**
 * At open, with no live writer: what a dead writer left (its lock file is still there) or a
 * fresh meta.db lacks is recovered now rather than at the next write, so `store verify`,
 * lookups and the feed see a whole store at once. Best effort: a failure (a full disk, say)
 * is left for the next writer, which recovers first; a writer that starts meanwhile wins.
 */
export async function healAtOpen(ctx: StoreContext): Promise<HealReport | null> {
  if (!ctx.recoverNeeded && !existsSync(ctx.paths.lock)) return null
  if (liveLockHolder(ctx.paths.lock) !== undefined) return null
  let lock: WriterLock
  try {
    lock = acquireWriterLock(ctx.paths.lock)
  } catch {
    return null // a writer got there first: it recovers before its first write
  }
  const adopted = ctx.adopted
  try {
    const r = await exclusive(ctx, () => rebuildLocked(ctx))
    ctx.adopted = false
    ctx.recoverNeeded = false
    return { adopted, recovered: r.indexed, corrupt: r.corrupt.length }
  } catch (err) {
    ctx.recoverNeeded = true
    warnOnce(
      ctx,
      `the store could not recover at open, the next write will: ${(err as Error).message}`,
    )
    return null
  } finally {
    lock.release()
  }
}

/** Takes the writer lock once; after a dead writer (or a fresh meta.db), recovers first. */
export async function ensureWriter(ctx: StoreContext): Promise<void> {
  if (!ctx.lock) {
    ctx.lock = acquireWriterLock(ctx.paths.lock)
    await cleanStaging(ctx.paths.staging)
    if (ctx.lock.stale) ctx.recoverNeeded = true
  }
  if (ctx.recoverNeeded) {
    await ctx.stage2
    ctx.recoverNeeded = false
    try {
      await rebuildLocked(ctx)
      ctx.adopted = false
      ctx.stage2Failure = undefined
    } catch (err) {
      ctx.recoverNeeded = true
      throw err
    }
  }
  const r = stmt(ctx, 'SELECT max(seq) AS s, max(created_at) AS c FROM blobs').get() as {
    s: number | null
    c: number | null
  }
  ctx.lastSeq = Math.max(ctx.lastSeq, r.s ?? 0)
  ctx.lastCreatedAt = Math.max(ctx.lastCreatedAt, r.c ?? 0)
}

/**
 * Forgets index rows whose file is gone: a core restored with an older store than its
 * meta.db (the POP it was copied from had not pulled the newest blobs yet). `inTransaction`
 * runs first in the same transaction with the forgotten blobs (the credentials that name
 * them go with them), so no row is left pointing at a blob that is not there. Returns the
 * forgotten blobs, in seq order. A file that exists is never forgotten.
 */
export function forgetMissing(
  ctx: StoreContext,
  inTransaction?: (forgotten: readonly BlobInfo[]) => void,
): BlobInfo[] {
  const rows = (
    stmt(ctx, `SELECT ${INFO_COLS} FROM blobs ORDER BY seq`).all() as Record<string, unknown>[]
  ).map(rowToInfo)
  const gone = rows.filter((b) => !existsSync(join(ctx.root, b.path)))
  if (gone.length === 0) return []
  ctx.db
    .transaction(() => {
      inTransaction?.(gone)
      const del = stmt(ctx, 'DELETE FROM blobs WHERE seq = ?')
      for (const b of gone) del.run(b.seq)
      rechainFrom(ctx, gone[0]!) // every chain value after the first forgotten row changes
    })
    .immediate()
  return gone
}
