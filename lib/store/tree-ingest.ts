// Bulk ingest of a whole staged tree into an EMPTY store (a new POP's bootstrap,
// lib/pop-sync/bootstrap.ts). The tree is laid out like the store ({shard}/{p0}/{name}.cla,
// as `rsync -r` of the core's shard folders makes it) and comes in groups of shard folders.
//
// verifyTree, per group while the next group still transfers: every expected file is read
// and checked by its whole sha256 against an entry the caller authenticated (the core's
// signed replication log) and its header against that entry; whatever else the group's
// folders hold is removed; then the verified files are sealed +i and their p0 folders +a
// right there in staging (the store's own seals, made early: a sealed file cannot change
// after it was verified, and the work overlaps the transfer), after one syncfs of the group
// (sealing a file whose data is still dirty writes it back first, file by file).
//
// ingestTree, once: one syncfs makes the data durable; each staged shard folder replaces
// the store's empty one in one rename (the store root and that empty shard lose +a for the
// instant of the rename; a whole p0 folder cannot be renamed once it is +a, and 256 renames
// cost nothing next to 100,000); a second syncfs makes the entries durable; the new shard
// folders and the root are sealed +a again; every row is indexed with the caller's
// inTransaction (the POP's cursor) in ONE transaction. When only part of what was verified
// is to be indexed (a gap in the log: a file missing or refused), the slow path unseals the
// staged tree, removes the rest and moves p0 folders one by one.
//
// A crash before the index commit leaves files in place without rows: the writer lock is
// stale, the store's recovery indexes them at the next open (and re-seals their folders),
// and the next pull finds them held, without a download.
import { readdirSync, renameSync, statSync, type Dirent } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import type { BlobInfo } from './blob-index.js'
import { insertRows } from './batch.js'
import { fileSha256 } from './chain.js'
import { checkExpect, infoOf } from './checks.js'
import { isSealing, stmt, type StoreContext } from './context.js'
import { readExpectedSync, readRegularFileSync } from './durable.js'
import { decodeCla } from './format.js'
import { SHARDS } from './open.js'
import { ensureWriter } from './rebuild.js'
import { chattr, unsealTree } from './seal.js'

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
  /** The shard folders this group covers. */
  readonly shards: readonly string[]
  /** Relative paths verified, in the order given. */
  readonly paths: readonly string[]
}

/** verifyTree's result: the verified files, and the first that failed (with its index). */
export interface VerifyTreeResult {
  verified: VerifiedTree
  bad: { index: number; path: string; error: unknown } | null
}

const verifiedTrees = new WeakMap<
  VerifiedTree,
  { owner: StoreContext; infos: BlobInfo[]; sealed: boolean }
>()

const ents = (dir: string): Dirent[] => {
  try {
    return readdirSync(dir, { withFileTypes: true })
  } catch {
    return []
  }
}

/** Options of BlobStore.verifyTree. */
export interface VerifyTreeOptions {
  /**
   * Everything the one writer of the group's folders wrote there, relative to `dir`, folders
   * with a trailing `/` (a complete `rsync -r` into folders that did not exist, its
   * `--out-format=%n` lines): what is to be removed is found in this list instead of by
   * reading every folder (100,000 p0 folders: ~1.5 s of CPU). Ignored when a line holds a
   * backslash (rsync escapes an unprintable name, which then names no file here): every
   * folder is read as without it.
   */
  written?: readonly string[]
}

/**
 * BlobStore.verifyTree: under `dir`, the shard folders `shards` must hold exactly `entries`
 * (anything else is removed); each entry's file is checked, then sealed in place.
 */
export async function verifyTree(
  ctx: StoreContext,
  dir: string,
  shards: readonly string[],
  entries: readonly TreeEntry[],
  opts: VerifyTreeOptions = {},
): Promise<VerifyTreeResult> {
  const infos: BlobInfo[] = []
  const paths: string[] = []
  const ok = new Set<string>()
  let bad: VerifyTreeResult['bad'] = null
  for (let i = 0; i < entries.length; i++) {
    // synchronous reads: the files are fresh in the page cache and a thread-pool read costs
    // more than the read; yield now and then so the feed and rsync's pipes keep moving
    if (i % 512 === 511) await new Promise((r) => setImmediate(r))
    const e = entries[i]!
    try {
      const want = e.expect.file_size
      const buf =
        want === undefined
          ? readRegularFileSync(join(dir, e.path)).buf
          : readExpectedSync(join(dir, e.path), want) // decodeCla refuses another length
      const sum = fileSha256(buf)
      if (sum !== e.file_sha256) {
        throw claError('CLA_ERR_BAD_HASH', `${e.path}: file sha256 ${sum} differs from its entry`, {
          details: { path: e.path },
        })
      }
      const d = decodeCla(buf, e.path)
      checkExpect(d, e.path, { ...e.expect, path: e.path })
      infos.push(infoOf(d, e.path, sum))
      paths.push(e.path)
      ok.add(e.path)
    } catch (error) {
      bad ??= { index: i, path: e.path, error }
    }
  }
  // nothing else stays in the group's folders: not a refused file, not a file the feed did
  // not list (never published, written after the feed was read), not a stray entry
  const p0Dirs: string[] = []
  const written = opts.written?.some((l) => l.includes('\\')) ? undefined : opts.written
  if (written) {
    const kept = new Set<string>()
    for (const p of paths) kept.add(p.slice(0, p.lastIndexOf('/')))
    for (const line of written) {
      const folder = line.endsWith('/') ? line.slice(0, -1) : null
      // a shard folder stays; a p0 folder stays when it holds a verified file; a file stays
      // when it was verified: anything else goes (with whatever is under it)
      if (folder !== null ? folder.includes('/') && !kept.has(folder) : !ok.has(line))
        await rm(join(dir, folder ?? line), { force: true, recursive: true })
    }
    for (const k of kept) p0Dirs.push(join(dir, k))
  }
  for (const s of written ? [] : shards) {
    for (const p of ents(join(dir, s))) {
      const rel = `${s}/${p.name}`
      if (!p.isDirectory()) {
        await rm(join(dir, rel), { force: true, recursive: true })
        continue
      }
      let kept = 0
      for (const f of ents(join(dir, rel))) {
        if (f.isFile() && ok.has(`${rel}/${f.name}`)) kept++
        else await rm(join(dir, rel, f.name), { force: true, recursive: true })
      }
      if (kept > 0) p0Dirs.push(join(dir, rel))
      else await rm(join(dir, rel), { force: true, recursive: true })
    }
  }
  const sealed = isSealing(ctx) && infos.length > 0
  if (sealed) {
    // written back first, in one syncfs: ext4 writes a dirty file's data back before it
    // sets +i on it, one file at a time (10,000 fresh files: 0.8 s to seal, 0.28 s after a
    // sync)
    await ctx.sealer.syncfs([dir])
    await ctx.sealer.seal(
      paths.map((p) => join(dir, p)),
      p0Dirs,
    )
  }
  const verified: VerifiedTree = Object.freeze({ dir, shards: [...shards], paths })
  verifiedTrees.set(verified, { owner: ctx, infos, sealed })
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
  let allSealed = true
  for (const g of groups) {
    const v = verifiedTrees.get(g)
    if (!v || v.owner !== ctx || g.dir !== dir) {
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        'ingestTree was given a tree this store did not verify, one of another folder, or one already ingested',
      )
    }
    verifiedTrees.delete(g)
    allSealed &&= v.sealed || v.infos.length === 0
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
  const sealing = isSealing(ctx)
  const whole = infos.length === byPath.size && (allSealed || !sealing)
  const shards = SHARDS.filter((s) => isDir(join(dir, s)))
  // the slow path (a gap): back to plain staged files, only `infos` kept
  if (!whole) {
    await unsealTree(dir)
    const keep = new Set(infos.map((i) => i.path))
    for (const s of shards)
      for (const p of ents(join(dir, s)))
        for (const f of ents(join(dir, s, p.name)))
          if (!keep.has(`${s}/${p.name}/${f.name}`))
            await rm(join(dir, s, p.name, f.name), { force: true, recursive: true })
  }
  // 1. the data durable before any of it is visible
  await ctx.sealer.syncfs([ctx.root])
  // 2. into place
  ctx.recoverNeeded = true // until the rows commit
  const swapped: string[] = []
  if (whole) {
    const empty = shards.filter((s) => ents(join(ctx.root, s)).length === 0)
    if (sealing && empty.length)
      await chattr(['-a'], [ctx.root, ...empty.map((s) => join(ctx.root, s))])
    for (const s of empty) {
      renameSync(join(dir, s), join(ctx.root, s)) // replaces the empty folder at once
      swapped.push(s)
    }
    const rest = shards.filter((s) => !empty.includes(s))
    if (sealing && rest.length) await unsealTree(join(dir, rest[0]!, '..'))
  }
  for (const s of shards.filter((x) => !swapped.includes(x)))
    for (const p of ents(join(dir, s))) renameSync(join(dir, s, p.name), join(ctx.root, s, p.name))
  // 3. entries durable, 4. sealed, 5. indexed
  await ctx.sealer.syncfs([ctx.root])
  let sealed = { sealed: sealing }
  if (sealing) {
    const moved = shards.filter((s) => !swapped.includes(s))
    const files =
      moved.length || !whole ? infos.filter((i) => !swapped.includes(i.path.slice(0, 2))) : []
    const p0Dirs = [
      ...new Set(files.map((i) => join(ctx.root, i.path.slice(0, i.path.lastIndexOf('/'))))),
    ]
    try {
      await ctx.sealer.seal(
        files.map((i) => join(ctx.root, i.path)),
        [...p0Dirs, ...shards.map((s) => join(ctx.root, s)), ctx.root],
      )
    } catch (err) {
      if (ctx.protection === 'enforce') throw err
      sealed = { sealed: false }
    }
  }
  insertRows(ctx, infos, sealed, opts.inTransaction)
  ctx.recoverNeeded = false
  const last = infos[infos.length - 1]!
  ctx.lastSeq = Math.max(ctx.lastSeq, last.seq)
  ctx.lastCreatedAt = Math.max(ctx.lastCreatedAt, last.created_at)
  return infos
}

function isDir(p: string): boolean {
  try {
    return statSync(p).isDirectory()
  } catch {
    return false
  }
}
