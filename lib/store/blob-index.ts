// The store's index (`blobs` in meta.db), read by everyone and written only by the store:
// every query on `blobs` is a method here or in lib/store/store.ts (the layers test holds
// the rest of the tree to it). One BlobIndex per database, its statements prepared once.
import type { Statement } from 'better-sqlite3'
import type { Db } from '../db/open.js'
import type { CursorPos } from './cursor.js'

/** One blob's index row (table `blobs`): where its .cla file is and what its header says. */
export interface BlobInfo {
  /** The store's sequence number of this blob; unique, strictly increasing. */
  seq: number
  /** µs since the Unix epoch; strictly increasing with seq. */
  created_at: number
  /** The P0 (lowercase hex) this blob is a version of. */
  p0: string
  /** Relative to the store root: {shard}/{p0}/{name}.cla */
  path: string
  /** Payload bytes. */
  size: number
  /** Whole .cla file bytes. */
  file_size: number
  /** Payload sha256, lowercase hex. */
  sha256: string
  /** Id of the key that signed the file (first 16 bytes of sha256 of its public key, hex). */
  key_id: string
  /** sha256 of the whole .cla file, lowercase hex (what the replication log's chain commits to). */
  file_sha256: string
}

/** A row in feed order and the feed's own field order (its JSON is the feed's items). */
export interface FeedRow {
  path: string
  p0: string
  size: number
  file_size: number
  sha256: string
  key_id: string
  created_at: number
  seq: number
  /** sha256 of the whole .cla file: the chain entry's hash (lib/store/chain.ts). */
  file_sha256: string
}

export const INFO_COLS = 'seq, created_at, p0, path, size, file_size, sha256, key_id, file_sha256'
const LATEST_SQL = `SELECT ${INFO_COLS} FROM blobs WHERE p0 = ? AND published = 1 ORDER BY created_at DESC, seq DESC LIMIT 1`
const FEED_COLS = 'path, p0, size, file_size, sha256, key_id, created_at, seq, file_sha256'

export function rowToInfo(r: Record<string, unknown>): BlobInfo {
  return {
    seq: r.seq as number,
    created_at: r.created_at as number,
    p0: r.p0 as string,
    path: r.path as string,
    size: r.size as number,
    file_size: r.file_size as number,
    sha256: r.sha256 as string,
    key_id: r.key_id as string,
    file_sha256: r.file_sha256 as string,
  }
}

const cache = new WeakMap<Db, BlobIndex>()

/** The index of the store whose metadata is `db` (one per database). */
export function blobIndex(db: Db): BlobIndex {
  let ix = cache.get(db)
  if (!ix) cache.set(db, (ix = new BlobIndex(db)))
  return ix
}

/** Prepared queries over the `blobs` table of one meta.db; get it with `blobIndex(db)`. */
export class BlobIndex {
  private readonly stmts = new Map<string, Statement>()
  private latestStmt: Statement | undefined

  constructor(readonly db: Db) {}

  private stmt(sql: string): Statement {
    let st = this.stmts.get(sql)
    if (!st) this.stmts.set(sql, (st = this.db.prepare(sql)))
    return st
  }

  private info(sql: string, ...args: unknown[]): BlobInfo | undefined {
    const r = this.stmt(sql).get(...args) as Record<string, unknown> | undefined
    return r ? rowToInfo(r) : undefined
  }

  /**
   * Blobs no put acknowledged (published = 0): sealed files kept (WORM) but never in the
   * feed nor a P0's latest — a registration that failed after its file was written, or a
   * file a dead writer linked before its row committed.
   */
  unpublished(): number {
    return this.stmt('SELECT count(*) FROM blobs WHERE published = 0').pluck().get() as number
  }

  /** Blobs indexed (published or not). */
  count(): number {
    return this.stmt('SELECT count(*) FROM blobs').pluck().get() as number
  }

  /** Blobs indexed and their whole-file bytes. */
  totals(): { count: number; bytes: number } {
    const r = this.stmt(
      'SELECT count(*) AS n, coalesce(sum(file_size), 0) AS bytes FROM blobs',
    ).get() as { n: number; bytes: number }
    return { count: r.n, bytes: r.bytes }
  }

  /** The blob with sequence number `seq`, published or not; undefined when none. */
  bySeq(seq: number): BlobInfo | undefined {
    return this.info(`SELECT ${INFO_COLS} FROM blobs WHERE seq = ?`, seq)
  }

  /** The blob at `path` (relative to the store root), published or not; undefined when none. */
  byPath(path: string): BlobInfo | undefined {
    return this.info(`SELECT ${INFO_COLS} FROM blobs WHERE path = ?`, path)
  }

  /** The newest published version of `p0` (no validation: callers check the P0 first). */
  latest(p0: string): BlobInfo | undefined {
    // a POP's every lookup miss: the statement kept, not found again by its text
    this.latestStmt ??= this.stmt(LATEST_SQL)
    const r = this.latestStmt.get(p0) as Record<string, unknown> | undefined
    return r ? rowToInfo(r) : undefined
  }

  /** Whether any indexed blob lies under the relative folder `dir` (e.g. `ab/<p0>`). */
  holdsUnder(dir: string): boolean {
    const like = `${dir.replace(/[\\%_]/g, (c) => `\\${c}`)}/%`
    return (
      this.stmt("SELECT 1 FROM blobs WHERE path LIKE ? ESCAPE '\\' LIMIT 1").get(like) !== undefined
    )
  }

  /** Every blob's path and file size, in index order (lazily: millions stay cheap). */
  files(): IterableIterator<{ path: string; file_size: number }> {
    return this.stmt('SELECT path, file_size FROM blobs').iterate() as IterableIterator<{
      path: string
      file_size: number
    }>
  }

  /** Up to `limit` paths and file sizes after `path` in path order (a bounded page of files()). */
  filesAfter(path: string, limit: number): Array<{ path: string; file_size: number }> {
    return this.stmt('SELECT path, file_size FROM blobs WHERE path > ? ORDER BY path LIMIT ?').all(
      path,
      limit,
    ) as Array<{ path: string; file_size: number }>
  }

  /** Up to `limit` distinct P0s after `p0`, sorted (the folders a store holds, page by page). */
  p0sAfter(p0: string, limit: number): string[] {
    return this.stmt('SELECT DISTINCT p0 FROM blobs WHERE p0 > ? ORDER BY p0 LIMIT ?')
      .pluck()
      .all(p0, limit) as string[]
  }

  /** Every path, sorted. */
  paths(): string[] {
    return this.stmt('SELECT path FROM blobs ORDER BY path').pluck().all() as string[]
  }

  /** Oldest and newest created_at (null when empty). */
  createdRange(): { lo: number | null; hi: number | null } {
    return this.stmt('SELECT min(created_at) AS lo, max(created_at) AS hi FROM blobs').get() as {
      lo: number | null
      hi: number | null
    }
  }

  /** Blob count and bytes per bucket of `width` µs from `start` (bucket b = [start + b·width, …)). */
  histogram(start: number, width: number): Array<{ b: number; n: number; bytes: number }> {
    return this.stmt(
      'SELECT CAST((created_at - ?) / ? AS INTEGER) AS b, count(*) AS n, sum(file_size) AS bytes FROM blobs GROUP BY b ORDER BY b',
    ).all(start, width) as Array<{ b: number; n: number; bytes: number }>
  }

  // --- the replication log's chain (lib/store/chain.ts) ---------------------------------

  /** The chain value after the published blob `seq`; null when none (or not computed yet). */
  chainAt(seq: number): string | null {
    return (
      (this.stmt('SELECT chain FROM blobs WHERE seq = ? AND published = 1').pluck().get(seq) as
        string | null | undefined) ?? null
    )
  }

  /** The newest published blob's position and chain value, or null when none is published. */
  chainHead(): { created_at: number; seq: number; chain: string | null } | null {
    return (
      (this.stmt(
        'SELECT created_at, seq, chain FROM blobs WHERE published = 1 ORDER BY created_at DESC, seq DESC LIMIT 1',
      ).get() as { created_at: number; seq: number; chain: string | null } | undefined) ?? null
    )
  }

  // --- the change feed, in (created_at, seq) order ------------------------------------

  /** The newest published (created_at, seq), or null. */
  head(): CursorPos | null {
    return (
      (this.stmt(
        'SELECT created_at, seq FROM blobs WHERE published = 1 ORDER BY created_at DESC, seq DESC LIMIT 1',
      ).get() as CursorPos | undefined) ?? null
    )
  }

  /** Up to `limit` published rows after `pos` (null: from the start), in feed order and fields. */
  feedAfter(pos: CursorPos | null, limit: number): FeedRow[] {
    return (
      pos
        ? this.stmt(
            `SELECT ${FEED_COLS} FROM blobs WHERE (created_at, seq) > (?, ?) AND published = 1 ORDER BY created_at, seq LIMIT ?`,
          ).all(pos.created_at, pos.seq, limit)
        : this.stmt(
            `SELECT ${FEED_COLS} FROM blobs WHERE published = 1 ORDER BY created_at, seq LIMIT ?`,
          ).all(limit)
    ) as FeedRow[]
  }

  /** Published blobs after `pos` (null: all). */
  countAfter(pos: CursorPos | null): number {
    return (
      pos
        ? this.stmt('SELECT count(*) FROM blobs WHERE (created_at, seq) > (?, ?) AND published = 1')
            .pluck()
            .get(pos.created_at, pos.seq)
        : this.stmt('SELECT count(*) FROM blobs WHERE published = 1').pluck().get()
    ) as number
  }
}
