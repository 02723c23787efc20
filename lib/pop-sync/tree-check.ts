// A cheap check of a POP's whole sealed tree in bounded memory: one stat per indexed file
// and per p0 folder, and reads only what changed since the last check.
//
// Why ctime: a sealed file (+i) cannot be written, renamed or removed until someone clears
// the flag, and clearing it, writing it or swapping it all set the inode's ctime (the kernel
// sets it; no user call can set it back). So a file whose ctime is older than the previous
// check is the file that check saw, and only newer ones are read (sha256 and signature
// against the index row). Folders: adding or removing an entry sets the folder's mtime, so
// only folders changed since are listed to find files the index does not hold.
//
// Pages of the index are read in path order with a yield between pages: a million blobs
// never sit in memory at once, and a POP answering lookups is not blocked for the sweep.
// Decay that no call makes (a bit flipped on the disk itself) keeps its ctime: that is what
// the periodic full verify is for.
import { readdirSync, readFileSync, statSync, type Stats } from 'node:fs'
import { join } from 'node:path'
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { claError } from '../errors.js'
import type { BlobStore } from '../store/index.js'
import { parseBlobPath, verifyCla } from '../store/format.js'
import { shardOf } from '../store/p0.js'

/** ctime is set from the kernel's coarse clock: a little slack so a change made during the
 * previous check is read again rather than missed. */
const CTIME_SLACK_MS = 2000

export interface TreeCheckOptions {
  /**
   * Read files and list folders whose ctime or mtime is at or after this (ms since the
   * epoch, less a small slack); 0 reads every file (a first check).
   */
  sinceMs: number
  /** Paths (relative to the store root) the agent is writing right now: not judged. */
  skip?: (rel: string) => boolean
  /** Index rows per page between yields to the event loop. Default 2000. */
  pageSize?: number
  /** Stops the check with CLA_ERR_SYNC_ABORTED (as the pull does), between pages. */
  signal?: AbortSignal
}

/** One entry of the tree check that is not as the index says. */
export interface TreeFinding {
  /** Path relative to the store root. */
  path: string
  /**
   * missing/size/damaged: an indexed blob to repair. foreign_file/foreign_dir: something the
   * store did not write. unindexed: a valid signed blob the index lacks yet (a writer died
   * between link and index; the store indexes it at its next recovery), not an alarm.
   */
  reason: 'missing' | 'size' | 'damaged' | 'foreign_file' | 'foreign_dir' | 'unindexed'
}

/** What one check of the sealed tree found (checkTree). */
export interface TreeCheckResult {
  /** Indexed blobs to repair. */
  bad: TreeFinding[]
  /** Entries the store did not write (alarms). */
  foreign: TreeFinding[]
  /** Valid blobs awaiting the store's recovery. */
  unindexed: string[]
  /** Files and folders stat'ed. */
  stats: number
  /** Files read and verified (changed since the last check). */
  read: number
}

/** An abort (shutdown) stops the check with the pull's own code, not a DOMException. */
function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted)
    throw claError(
      'CLA_ERR_SYNC_ABORTED',
      'tree check stopped by shutdown; the next run checks again',
    )
}

const isShard = (name: string) => /^[0-9a-f]{2}$/.test(name)

export async function checkTree(store: BlobStore, o: TreeCheckOptions): Promise<TreeCheckResult> {
  const since = o.sinceMs > 0 ? o.sinceMs - CTIME_SLACK_MS : -Infinity
  const page = o.pageSize ?? 2000
  const skip = o.skip ?? (() => false)
  const res: TreeCheckResult = { bad: [], foreign: [], unindexed: [], stats: 0, read: 0 }
  const stat = (rel: string): Stats | null => {
    res.stats++
    try {
      return statSync(join(store.root, rel))
    } catch {
      return null
    }
  }
  const changed = (st: Stats) => Math.max(st.ctimeMs, st.mtimeMs) >= since

  // 1. every indexed file: there, the size of its row, and read again if changed since
  for (let after = ''; ;) {
    checkAbort(o.signal)
    const rows = store.index.filesAfter(after, page)
    if (rows.length === 0) break
    after = rows[rows.length - 1]!.path
    const toRead: string[] = []
    for (const r of rows) {
      if (skip(r.path)) continue
      const st = stat(r.path)
      if (!st) res.bad.push({ path: r.path, reason: 'missing' })
      else if (st.size !== r.file_size) res.bad.push({ path: r.path, reason: 'size' })
      else if (changed(st)) toRead.push(r.path)
    }
    for (const path of toRead) {
      const row = store.index.byPath(path)
      if (!row) continue
      res.read++
      try {
        await store.readFile(row)
      } catch {
        res.bad.push({ path, reason: stat(path) ? 'damaged' : 'missing' })
      }
    }
    await yieldToLoop()
  }

  // 2. p0 folders changed since: entries the index does not hold
  const judgeFile = (rel: string) => {
    if (skip(rel) || store.index.byPath(rel)) return
    if (isValidBlob(store, rel)) res.unindexed.push(rel)
    else res.foreign.push({ path: rel, reason: 'foreign_file' })
  }
  for (let after = ''; ;) {
    checkAbort(o.signal)
    const p0s = store.index.p0sAfter(after, page)
    if (p0s.length === 0) break
    after = p0s[p0s.length - 1]!
    for (const p0 of p0s) {
      const dir = `${shardOf(p0)}/${p0}`
      const st = stat(dir)
      if (!st || !changed(st)) continue
      for (const name of readdirSync(join(store.root, dir))) {
        if (!name.startsWith('.')) judgeFile(`${dir}/${name}`)
      }
    }
    await yieldToLoop()
  }

  // 3. the root and the shard folders: nothing but shards, and only p0 folders the index holds
  for (const ent of readdirSync(store.root, { withFileTypes: true })) {
    if (ent.name.startsWith('.') || (ent.isDirectory() && isShard(ent.name))) continue
    if (!skip(ent.name))
      res.foreign.push({
        path: ent.name,
        reason: ent.isDirectory() ? 'foreign_dir' : 'foreign_file',
      })
  }
  for (const shard of readdirSync(store.root).filter(isShard)) {
    const st = stat(shard)
    if (!st || !changed(st)) continue
    for (const ent of readdirSync(join(store.root, shard), { withFileTypes: true })) {
      const rel = `${shard}/${ent.name}`
      if (ent.name.startsWith('.') || skip(rel)) continue
      if (!ent.isDirectory()) res.foreign.push({ path: rel, reason: 'foreign_file' })
      else if (!store.index.holdsUnder(rel)) {
        // a folder of valid blobs a dead writer left unindexed is not foreign
        const names = readdirSync(join(store.root, rel))
        const files = names.map((n) => `${rel}/${n}`)
        if (files.length > 0 && files.every((f) => isValidBlob(store, f)))
          res.unindexed.push(...files)
        else res.foreign.push({ path: rel, reason: 'foreign_dir' })
      }
    }
  }
  return res
}

/** A file at a blob path, signed by a trusted key, whose header matches its name. */
function isValidBlob(store: BlobStore, rel: string): boolean {
  const parsed = parseBlobPath(rel)
  if (!parsed) return false
  try {
    const d = verifyCla(readFileSync(join(store.root, rel)), store.trustedKeys, rel)
    return d.p0 === parsed.p0 && d.createdAt === parsed.createdAt
  } catch {
    return false
  }
}
