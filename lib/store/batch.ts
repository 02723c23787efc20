// The steps every path that adds files to the store shares (put's writer.ts, ingest.ts,
// rebuild.ts): make the p0 folders a batch needs, fsync the folders it touched, seal the
// batch (one chattr for the files, one for new folders), and write its index rows.
import { join } from 'node:path'
import type { Db } from '../db/open.js'
import { claError, isClavitorError, type ClavitorError } from '../errors.js'
import type { BlobInfo } from './blob-index.js'
import { isSealing, stmt, warnOnce, type StoreContext } from './context.js'
import { fsyncDir, mapLimit } from './durable.js'
import { publicDir } from './open.js'
import { shardOf } from './p0.js'
import { ChainTail, fillChain } from './rechain.js'

/** Makes the p0 folders that do not exist yet (0755); returns the ones made. */
export function makeP0Dirs(ctx: StoreContext, p0s: string[]): string[] {
  const created: string[] = []
  for (const p0 of new Set(p0s)) {
    const dir = join(ctx.root, shardOf(p0), p0)
    try {
      publicDir(dir)
      created.push(dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
  }
  return created
}

/** fsyncs every p0 folder touched, and the shard folders that gained a folder in `newDirs`. */
export async function syncDirs(ctx: StoreContext, p0s: string[], newDirs: string[]): Promise<void> {
  const dirs = new Set<string>()
  for (const p0 of p0s) dirs.add(join(ctx.root, shardOf(p0), p0))
  for (const d of newDirs) dirs.add(join(d, '..'))
  await mapLimit([...dirs], 16, fsyncDir)
}

/** Seals files (+i) and new folders (+a). Returns whether they are sealed and, in enforce mode, the error. */
export async function sealBatch(
  ctx: StoreContext,
  files: string[],
  dirs: string[],
): Promise<{ sealed: boolean; error?: ClavitorError }> {
  if (!isSealing(ctx)) return { sealed: false }
  try {
    // one chattr for the files (+i), one for new folders (+a), forked by the sealer shell
    await ctx.sealer.seal(files, dirs)
    return { sealed: true }
  } catch (err) {
    const e = isClavitorError(err)
      ? err
      : claError('CLA_ERR_SEAL_FAILED', String(err), { cause: err })
    ctx.sealFailure = e.message
    if (ctx.protection === 'enforce') return { sealed: false, error: e }
    warnOnce(ctx, `protection best-effort: sealing failed, files stay writable (${e.message})`)
    return { sealed: false }
  }
}

/**
 * One index row (inside the caller's transaction). `published` false: the file is kept (WORM)
 * but no put acknowledged it, so it is never in the feed nor a P0's latest (blob-index.ts).
 * `chain`: the row's chain value (rechain.ts ChainTail), null for an unpublished row or one
 * that fillChain computes at the end of the transaction.
 */
export function insertRow(
  ctx: StoreContext,
  i: BlobInfo,
  sealed: boolean,
  published = true,
  chain: string | null = null,
): void {
  stmt(
    ctx,
    `INSERT INTO blobs (seq, created_at, p0, path, size, file_size, sha256, key_id, sealed, published, file_sha256, chain)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ).run(
    i.seq,
    i.created_at,
    i.p0,
    i.path,
    i.size,
    i.file_size,
    i.sha256,
    i.key_id,
    sealed ? 1 : 0,
    published ? 1 : 0,
    i.file_sha256 ?? null,
    published ? chain : null,
  )
}

/**
 * A put group's rows, each put's own inTransaction in a savepoint of the group's transaction:
 * a put whose hook throws keeps its row unpublished (out of the chain) and gets the hook's
 * error; the others commit. Returns each put's error (undefined: committed and published).
 */
export function insertPutRows(
  ctx: StoreContext,
  infos: BlobInfo[],
  hooks: ReadonlyArray<((info: BlobInfo, db: Db) => void) | undefined>,
  sealed: { sealed: boolean },
): unknown[] {
  const errors: unknown[] = infos.map(() => undefined)
  ctx.db
    .transaction(() => {
      const tail = new ChainTail(ctx)
      infos.forEach((info, i) => {
        const before = tail.save()
        insertRow(ctx, info, sealed.sealed, true, tail.extend(info))
        const hook = hooks[i]
        if (!hook) return
        try {
          ctx.db.transaction(() => hook(info, ctx.db))() // nested: a savepoint
        } catch (err) {
          errors[i] = err ?? new Error('inTransaction failed')
          stmt(ctx, 'UPDATE blobs SET published = 0, chain = NULL WHERE seq = ?').run(info.seq)
          tail.restore(before)
        }
      })
      if (tail.broken) fillChain(ctx)
    })
    .immediate() // it reads the chain's tail first: take the write lock before that read
  ctx.published.emit(infos.filter((_, i) => errors[i] === undefined))
  return errors
}

/** A batch's rows (published, chained) and the caller's `inTx` in one transaction. */
export function insertRows(
  ctx: StoreContext,
  infos: BlobInfo[],
  sealed: { sealed: boolean },
  inTx?: (db: Db) => void,
): void {
  ctx.db
    .transaction(() => {
      const tail = new ChainTail(ctx)
      for (const i of infos) insertRow(ctx, i, sealed.sealed, true, tail.extend(i))
      if (tail.broken) fillChain(ctx)
      inTx?.(ctx.db)
    })
    .immediate() // it reads the chain's tail first: take the write lock before that read
  ctx.published.emit(infos)
}
