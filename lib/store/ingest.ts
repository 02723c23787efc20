// Ingest (POPs): staged .cla files (an rsync pull, a repair) moved into the store. Verify
// every staged file first (verifyStaged can do that ahead, outside the writer lock, and
// ingest then checks each file is the very one verified), make the staged data durable
// (one syncfs of the store's filesystem for a large batch, else an fsync per file), rename
// whole staged p0 folders into place when the store has no folder for that p0 yet (else
// mkdir + rename into a folder made for the batch, else link), make the directory entries
// durable (syncfs again, else folder fsyncs), seal, then index the batch and run the
// caller's inTransaction (the POP's cursor) in one SQLite transaction.
import {
  chmodSync,
  existsSync,
  lstatSync,
  readdirSync,
  renameSync,
  statSync,
  type BigIntStats,
} from 'node:fs'
import { copyFile, open, readFile, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import type { Db } from '../db/open.js'
import { claError, isClavitorError } from '../errors.js'
import { INFO_COLS, rowToInfo, type BlobInfo } from './blob-index.js'
import { insertRows, makeP0Dirs, sealBatch, syncDirs } from './batch.js'
import { checkExpect, infoOf } from './checks.js'
import { stmt, type StoreContext } from './context.js'
import { dirtyBytes } from './dirty.js'
import { linkNoClobber, mapLimit, readRegularFileSync } from './durable.js'
import { decodeCla, verifyClaAsync } from './format.js'
import { fileSha256 } from './chain.js'
import { shardOf } from './p0.js'
import { ensureWriter } from './rebuild.js'

/** A staged .cla file to ingest, and what the feed said about it. */
export interface StagedFile {
  /** Absolute path of a staged .cla file (consumed on success). */
  file: string
  /** What the feed said; every given field must equal the file's header (file_sha256: the whole file's). */
  expect?: Partial<BlobInfo>
  /**
   * How the file is authenticated. 'signature' (default): its Ed25519 signature by a trusted
   * key, payload sha256 and structure. 'file-sha256': its whole-file sha256 equals
   * `expect.file_sha256`, which the caller has authenticated itself (the pull: an entry of the
   * replication log covered by a checkpoint the core signed, lib/pop-sync/pull.ts); structure
   * and header are still checked, the signature is left to the periodic verify.
   */
  verify?: 'signature' | 'file-sha256'
}

/**
 * Staged files already read and verified by BlobStore.verifyStaged, to be ingested once.
 * Only the store that verified them makes or accepts one (no way to skip verification).
 */
export interface VerifiedStaged {
  /** Store paths of the verified files, in order. */
  readonly paths: readonly string[]
}

/** BlobStore.verifyStaged: the verified prefix, and the first file that failed (if any). */
export interface VerifyStagedResult {
  verified: VerifiedStaged
  bad: { index: number; file: string; error: unknown } | null
}

/** Options of BlobStore.ingest. */
export interface IngestOptions {
  /** Runs inside the one transaction that inserts the index rows (e.g. advance a cursor). */
  inTransaction?: (db: Db) => void
}

interface VerifiedItem {
  staged: string
  info: BlobInfo
  bytes: Buffer
  /** Identity of the staged file when it was read: ingest refuses it if it changed since. */
  stat: { ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }
}

/**
 * Batches made by verifyStaged and not yet ingested, with the store that made each: a
 * batch is taken once, and only by that store.
 */
const verifiedBatches = new WeakMap<
  VerifiedStaged,
  { owner: StoreContext; items: VerifiedItem[] }
>()

/** Below this many files an fsync each is cheaper than two `sync -f` forks anyway. */
const SYNCFS_SMALL_MIN = 16

/** BlobStore.verifyStaged (step 1 of ingest on its own, outside the writer lock). */
export async function verifyStaged(
  ctx: StoreContext,
  staged: StagedFile[],
): Promise<VerifyStagedResult> {
  const results = await mapLimit(staged, 32, (s) =>
    verifyOne(ctx, s).then(
      (item) => ({ item, error: null }),
      (error: unknown) => ({ item: null, error }),
    ),
  )
  const items: VerifiedItem[] = []
  let bad: VerifyStagedResult['bad'] = null
  for (const [index, r] of results.entries()) {
    if (!r.item) {
      bad = { index, file: staged[index]!.file, error: r.error }
      break
    }
    items.push(r.item)
  }
  const verified: VerifiedStaged = Object.freeze({ paths: items.map((it) => it.info.path) })
  verifiedBatches.set(verified, { owner: ctx, items })
  return { verified, bad }
}

async function verifyOne(ctx: StoreContext, s: StagedFile): Promise<VerifiedItem> {
  let buf: Buffer
  let st: BigIntStats
  try {
    ;({ buf, st } = readRegularFileSync(s.file))
  } catch (cause) {
    throw claError(
      'CLA_ERR_NOT_FOUND',
      `staged file ${s.file} cannot be read: ${(cause as Error).message}`,
      {
        cause,
        details: { file: s.file },
      },
    )
  }
  const want = s.expect?.file_sha256
  if (s.verify === 'file-sha256' && !want) {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      `${s.file}: verify 'file-sha256' needs the expected file_sha256`,
    )
  }
  // the signature (when it is the check) first: a damaged file says BAD_SIGNATURE/BAD_HASH
  // of its own content before it is compared with what the feed expects
  const d =
    s.verify === 'file-sha256'
      ? decodeCla(buf, s.file)
      : await verifyClaAsync(buf, ctx.ring, s.file)
  const sum = fileSha256(buf)
  if (want !== undefined && sum !== want) {
    throw claError('CLA_ERR_BAD_HASH', `${s.file}: file sha256 ${sum} differs from ${want}`, {
      details: { file: s.file },
    })
  }
  const path = s.expect?.path ?? `${shardOf(d.p0)}/${d.p0}/${basename(s.file)}`
  checkExpect(d, s.file, { ...s.expect, path })
  return {
    staged: s.file,
    info: infoOf(d, path, sum),
    bytes: buf,
    stat: { ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs },
  }
}

/** The items of a batch this store verified; each batch is taken once. */
function takeVerified(ctx: StoreContext, v: VerifiedStaged): VerifiedItem[] {
  const batch = verifiedBatches.get(v)
  if (!batch || batch.owner !== ctx)
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      'ingest was given a verified batch this store did not make, or one already ingested',
    )
  verifiedBatches.delete(v)
  const { items } = batch
  for (const it of items) {
    let st: BigIntStats | undefined
    try {
      st = lstatSync(it.staged, { bigint: true })
    } catch {
      st = undefined
    }
    if (
      !st ||
      st.ino !== it.stat.ino ||
      st.size !== it.stat.size ||
      st.mtimeNs !== it.stat.mtimeNs ||
      st.ctimeNs !== it.stat.ctimeNs
    ) {
      throw claError(
        'CLA_ERR_HEADER_MISMATCH',
        `${it.staged} changed (or vanished) after it was verified; not ingested`,
        { details: { file: it.staged, path: it.info.path } },
      )
    }
  }
  return items
}

/** A batch too small for ingestSyncfsMin still uses syncfs when the page cache is clean. */
function syncfsCheap(ctx: StoreContext, n: number): boolean {
  if (n < SYNCFS_SMALL_MIN || ctx.syncfsMaxDirty <= 0) return false
  const dirty = dirtyBytes()
  return dirty !== null && dirty <= ctx.syncfsMaxDirty
}

/**
 * Renames whole staged p0 folders into the store: only a folder named after the p0 whose
 * entries are exactly the batch's regular files for that p0, under their target names,
 * when the store has no folder for that p0 yet. Returns the moved items and the new
 * folders. Anything else (or any rename error) is left for link. The pull stages flat
 * (nothing here for it); a repair (lib/pop-sync/repair.ts) stages {dir}/{shard}/{p0}/{name}
 * and meets this when the store lost a p0 folder whole.
 */
function moveP0Dirs(
  ctx: StoreContext,
  items: Array<{ staged: string; info: BlobInfo }>,
): {
  files: Set<unknown>
  dirs: string[]
} {
  const groups = new Map<string, Array<{ staged: string; info: BlobInfo }>>()
  for (const it of items) {
    const g = groups.get(it.info.p0)
    if (g) g.push(it)
    else groups.set(it.info.p0, [it])
  }
  const files = new Set<unknown>()
  const dirs: string[] = []
  for (const [p0, group] of groups) {
    const src = join(group[0]!.staged, '..')
    const dest = join(ctx.root, shardOf(p0), p0)
    const names = new Set<string>()
    for (const it of group) {
      const name = basename(it.staged)
      if (join(it.staged, '..') !== src || name !== basename(it.info.path)) break
      names.add(name)
    }
    // only a folder named after the p0 (the store's layout), never the caller's own root
    if (names.size !== group.length || basename(src) !== p0 || src.startsWith(ctx.root + '/'))
      continue
    try {
      if (existsSync(dest)) continue
      const ents = readdirSync(src, { withFileTypes: true })
      if (ents.length !== names.size || !ents.every((e) => e.isFile() && names.has(e.name)))
        continue
      chmodSync(src, 0o755)
      renameSync(src, dest)
    } catch {
      continue // nothing moved: the link path handles this group
    }
    dirs.push(dest)
    for (const it of group) files.add(it)
  }
  return { files, dirs }
}

/** BlobStore.ingest's work, under the in-process mutex. */
export async function ingestLocked(
  ctx: StoreContext,
  staged: StagedFile[] | VerifiedStaged,
  opts: IngestOptions,
): Promise<BlobInfo[]> {
  await ctx.stage2
  await ensureWriter(ctx)
  // 1. verify everything before anything becomes visible (or take what verifyStaged did).
  //    Synchronous reads (the staged files are fresh in the page cache; a thread-pool read
  //    costs more than the read), Ed25519 on the thread pool (verifyClaAsync): a batch's
  //    signatures are checked on every core while the next files are read and parsed.
  const items: VerifiedItem[] = Array.isArray(staged)
    ? await mapLimit(staged, 32, (s) => verifyOne(ctx, s))
    : takeVerified(ctx, staged as VerifiedStaged)
  if (items.length === 0) {
    if (opts.inTransaction) ctx.db.transaction(() => opts.inTransaction!(ctx.db))()
    return []
  }
  const known = stmt(ctx, `SELECT ${INFO_COLS} FROM blobs WHERE path = ?`)
  const fresh = items.filter((it) => {
    const row = known.get(it.info.path) as Record<string, unknown> | undefined
    if (!row) return true
    const r = rowToInfo(row)
    if (
      r.seq !== it.info.seq ||
      r.sha256 !== it.info.sha256 ||
      r.created_at !== it.info.created_at ||
      (r.file_sha256 !== null && r.file_sha256 !== it.info.file_sha256)
    ) {
      throw claError(
        'CLA_ERR_HEADER_MISMATCH',
        `${it.staged}: ${it.info.path} is indexed with different content`,
        {
          details: { file: it.staged, path: it.info.path },
        },
      )
    }
    return false
  })
  // 2. durable content before any link. A large batch: ONE `sync -f` of the store's
  //    filesystem covers every staged file on it (files on another filesystem are copied
  //    and fsynced one by one at link time). A small one: the same when little else is
  //    dirty on the machine (lib/store/dirty.ts), else fsync each staged file.
  const useSyncfs = items.length >= ctx.syncfsMin || syncfsCheap(ctx, items.length)
  if (useSyncfs) {
    const rootDev = statSync(ctx.root).dev
    const devOf = new Map<string, number>()
    const onRootFs = items.some((it) => {
      const dir = join(it.staged, '..')
      let dev = devOf.get(dir)
      if (dev === undefined) devOf.set(dir, (dev = statSync(dir).dev))
      return dev === rootDev
    })
    if (onRootFs) await ctx.sealer.syncfs([ctx.root])
  } else {
    await mapLimit(items, 16, async (it) => {
      const fh = await open(it.staged, 'r')
      try {
        await fh.sync()
      } finally {
        await fh.close()
      }
    })
  }
  // 3. into place. From here a crash or error may leave visible, unindexed (whole) files.
  ctx.recoverNeeded = true // until the rows commit
  //    A staged p0 folder that holds exactly this batch's files for a p0 the store does not
  //    have yet is renamed into its shard folder whole (no mkdir, no link: a mkdir costs
  //    ~0.25 ms of kernel CPU on ext4); every other file is linked into place.
  const moved = moveP0Dirs(ctx, items)
  const toLink = items.filter((it) => !moved.files.has(it))
  const made = makeP0Dirs(
    ctx,
    toLink.map((it) => it.info.p0),
  )
  const newDirs = [...moved.dirs, ...made]
  // A folder made just now for this batch (under the writer lock) holds nothing to clobber:
  // its files are renamed in (one syscall, and no second name a crash could leave in
  // staging); anywhere else a file is linked (never overwrites) and its staged name unlinked.
  const renameInto = new Set(made)
  const renamed = new Set<string>()
  await mapLimit(toLink, 16, async (it) => {
    const dest = join(ctx.root, it.info.path)
    if (renameInto.has(dirname(dest)) && !renamed.has(dest)) {
      renamed.add(dest)
      try {
        renameSync(it.staged, dest)
        return
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err
      }
    }
    try {
      linkNoClobber(it.staged, dest)
    } catch (err) {
      if (isClavitorError(err, 'CLA_ERR_EXISTS')) {
        const there = await readFile(dest)
        if (!there.equals(it.bytes)) {
          throw claError(
            'CLA_ERR_EXISTS',
            `${it.staged}: ${it.info.path} exists with different bytes`,
            {
              details: { file: it.staged, path: it.info.path },
            },
          )
        }
      } else if ((err as NodeJS.ErrnoException).code === 'EXDEV') {
        const tmp = join(ctx.paths.staging, `${basename(dest)}.ingest`)
        await copyFile(it.staged, tmp)
        const fh = await open(tmp, 'r')
        await fh.sync().finally(() => fh.close())
        linkNoClobber(tmp, dest)
        await unlink(tmp)
      } else throw err
    }
    await unlink(it.staged)
  })
  // 4. directory entries durable: one more syncfs (new folders, links), else folder fsyncs
  if (useSyncfs) await ctx.sealer.syncfs([ctx.root])
  else
    await syncDirs(
      ctx,
      items.map((it) => it.info.p0),
      newDirs,
    )
  // 5. seal (every p0 folder the batch touched, not only new ones: a folder a crash or a full
  //    disk left without +a is sealed by the next batch into it; +a again is harmless),
  // 6. index + inTransaction (the POP's cursor) in one transaction
  const sealed = await sealBatch(
    ctx,
    items.map((it) => join(ctx.root, it.info.path)),
    [
      ...new Set([
        ...newDirs,
        ...items.map((it) => join(ctx.root, shardOf(it.info.p0), it.info.p0)),
      ]),
    ],
  )
  if (sealed.error) throw sealed.error
  try {
    insertRows(
      ctx,
      fresh.map((it) => it.info),
      sealed,
      opts.inTransaction,
    )
  } catch (err) {
    if (isClavitorError(err)) throw err
    throw claError(
      'CLA_ERR_HEADER_MISMATCH',
      `ingest could not index the batch: ${(err as Error).message}`,
      {
        cause: err,
      },
    )
  }
  ctx.recoverNeeded = false
  for (const it of fresh) {
    ctx.lastSeq = Math.max(ctx.lastSeq, it.info.seq)
    ctx.lastCreatedAt = Math.max(ctx.lastCreatedAt, it.info.created_at)
  }
  return items.map((it) => it.info)
}
