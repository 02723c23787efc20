// Bulk ingest of a whole staged tree into an EMPTY store (a new POP's bootstrap,
// lib/pop-sync/bootstrap.ts): the tree is laid out like the store ({shard}/{p0}/{name}.cla,
// as `rsync -a` of the core's store makes it), every file is checked by its whole sha256
// against an entry the caller authenticated (the core's signed replication log) and its
// header against that entry (verifyTree, per group while the next group still transfers);
// then, once: whatever the tree holds that was not verified is removed, one syncfs makes
// the data durable, each staged p0 folder is renamed into its shard folder whole (no
// mkdir, no link per file), a second syncfs makes the entries durable, the files
// and folders are sealed in bulk, and every row is indexed with the caller's
// inTransaction (the POP's cursor) in ONE transaction. A crash before that commit leaves
// sealed files without rows: the store's recovery indexes them at the next open (the
// writer lock is stale), and the next pull finds them held, without a download.
import { readdirSync, renameSync, statSync } from 'node:fs'
import { readFile, rm } from 'node:fs/promises'
import { join } from 'node:path'
import fg from 'fast-glob'
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import type { BlobInfo } from './blob-index.js'
import { insertRows, sealBatch } from './batch.js'
import { fileSha256 } from './chain.js'
import { checkExpect, infoOf } from './checks.js'
import { stmt, type StoreContext } from './context.js'
import { mapLimit } from './durable.js'
import { decodeCla } from './format.js'
import { SHARDS } from './open.js'
import { ensureWriter } from './rebuild.js'

/** One file of a staged tree and the authenticated entry it must match. */
export interface TreeEntry {
  /** Relative path: {shard}/{p0}/{name}.cla (the same under the tree and the store). */
  path: string
  /** The whole file's sha256, authenticated by the caller. */
  file_sha256: string
  /** Header fields the file must carry (p0, seq, created_at, size, sha256, …). */
  expect: Partial<BlobInfo>
}

/** Files of a tree verified by BlobStore.verifyTree, to be ingested once. */
export interface VerifiedTree {
  /** The tree's folder. */
  readonly dir: string
  /** Relative paths verified, in the order given. */
  readonly paths: readonly string[]
}

/** verifyTree's result: the verified files, and the first that failed (with its index). */
export interface VerifyTreeResult {
  verified: VerifiedTree
  bad: { index: number; path: string; error: unknown } | null
}

const verifiedTrees = new WeakMap<VerifiedTree, { owner: StoreContext; infos: BlobInfo[] }>()

/** BlobStore.verifyTree: every entry's file under `dir`, checked (no store change). */
export async function verifyTree(
  ctx: StoreContext,
  dir: string,
  entries: readonly TreeEntry[],
): Promise<VerifyTreeResult> {
  const results = await mapLimit(entries, 32, async (e) => {
    try {
      const buf = await readFile(join(dir, e.path))
      const sum = fileSha256(buf)
      if (sum !== e.file_sha256) {
        throw claError('CLA_ERR_BAD_HASH', `${e.path}: file sha256 ${sum} differs from its entry`, {
          details: { path: e.path },
        })
      }
      const d = decodeCla(buf, e.path)
      checkExpect(d, e.path, { ...e.expect, path: e.path })
      return { info: infoOf(d, e.path, sum), error: null }
    } catch (error) {
      return { info: null, error }
    }
  })
  const infos: BlobInfo[] = []
  const paths: string[] = []
  let bad: VerifyTreeResult['bad'] = null
  results.forEach((r, i) => {
    if (r.info) {
      infos.push(r.info)
      paths.push(r.info.path)
    } else bad ??= { index: i, path: entries[i]!.path, error: r.error }
  })
  const verified: VerifiedTree = Object.freeze({ dir, paths })
  verifiedTrees.set(verified, { owner: ctx, infos })
  return { verified, bad }
}

/** Options of BlobStore.ingestTree. */
export interface TreeIngestOptions {
  /**
   * The relative paths to index, in the store's feed order: a subset of what the verified
   * groups hold (a POP's contiguous prefix of the log). Default: everything verified.
   */
  only?: readonly string[]
  /** Runs in the one transaction that inserts the rows (the POP's cursor). */
  inTransaction?: (db: Db) => void
}

/** BlobStore.ingestTree's work, under the in-process mutex. Returns the rows indexed. */
export async function ingestTreeLocked(
  ctx: StoreContext,
  groups: readonly VerifiedTree[],
  opts: TreeIngestOptions,
): Promise<BlobInfo[]> {
  await ctx.stage2
  await ensureWriter(ctx)
  if ((stmt(ctx, 'SELECT count(*) FROM blobs').pluck().get() as number) > 0) {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      'a staged tree is ingested into an empty store only (this one indexes blobs)',
    )
  }
  const dir = groups[0]?.dir
  const byPath = new Map<string, BlobInfo>()
  for (const g of groups) {
    const v = verifiedTrees.get(g)
    if (!v || v.owner !== ctx || g.dir !== dir) {
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        'ingestTree was given a tree this store did not verify, one of another folder, or one already ingested',
      )
    }
    verifiedTrees.delete(g)
    for (const i of v.infos) byPath.set(i.path, i)
  }
  const wanted = opts.only ?? [...byPath.keys()]
  const infos = wanted.map((p) => {
    const i = byPath.get(p)
    if (!i) throw claError('CLA_ERR_INVALID_INPUT', `${p} was not verified`)
    return i
  })
  infos.sort((a, b) => a.created_at - b.created_at || a.seq - b.seq)
  if (!dir || infos.length === 0) {
    if (opts.inTransaction) ctx.db.transaction(() => opts.inTransaction!(ctx.db))()
    return []
  }
  // 1. nothing unverified comes along: what the tree holds beyond `infos` goes
  const keep = new Set(infos.map((i) => i.path))
  const present = await fg('**', {
    cwd: dir,
    onlyFiles: false,
    markDirectories: true,
    dot: true,
    followSymbolicLinks: false,
  })
  await mapLimit(
    present.filter((p) => !p.endsWith('/') && !keep.has(p)),
    16,
    (p) => rm(join(dir, p), { recursive: true, force: true }),
  )
  // 2. the data durable before any of it is visible
  await ctx.sealer.syncfs([ctx.root])
  // 3. into place: each staged p0 folder renamed into its shard folder (+a allows adding
  //    an entry; the store root and its shards stay sealed throughout)
  ctx.recoverNeeded = true // until the rows commit
  const shards = SHARDS.filter((s) => exists(join(dir, s)))
  for (const s of shards) {
    for (const p0 of readdirSync(join(dir, s))) {
      renameSync(join(dir, s, p0), join(ctx.root, s, p0)) // refused if the store holds it
    }
  }
  // 4. entries durable, 5. sealed (files +i, p0 and shard folders +a), 6. indexed
  await ctx.sealer.syncfs([ctx.root])
  const p0Dirs = [
    ...new Set(infos.map((i) => join(ctx.root, i.path.slice(0, i.path.lastIndexOf('/'))))),
  ]
  const sealed = await sealBatch(
    ctx,
    infos.map((i) => join(ctx.root, i.path)),
    p0Dirs,
  )
  if (sealed.error) throw sealed.error
  insertRows(ctx, infos, sealed, opts.inTransaction)
  ctx.recoverNeeded = false
  const last = infos[infos.length - 1]!
  ctx.lastSeq = Math.max(ctx.lastSeq, last.seq)
  ctx.lastCreatedAt = Math.max(ctx.lastCreatedAt, last.created_at)
  return infos
}

function exists(p: string): boolean {
  try {
    return statSync(p).isDirectory()
  } catch {
    return false
  }
}
