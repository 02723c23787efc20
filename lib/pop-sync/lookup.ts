// WL3 lookups on a POP: the latest blob of a P0 from the SQLite index, its file read and
// checked against that row (structure, header, payload sha256; optionally the signature
// again) before it is served. A bounded LRU cache keeps the verified latest answer per P0;
// an answer leaves it when a newer blob of its P0 is published by this process (the store's
// onPublished signal), and the whole cache is dropped when another connection commits to
// meta.db (PRAGMA data_version: a CLI `pop sync --once` beside `pop run`). Other writes of
// this process (audit rows, sync state, the cursor) leave cached answers alone.
import { createHash } from 'node:crypto'
import { join } from 'node:path'
import type { Statement } from 'better-sqlite3'
import { decodeCla, verifyCla } from '../store/format.js'
import type { BlobInfo, BlobStore } from '../store/index.js'
import { claError } from '../errors.js'
import { readExpectedSync } from '../store/durable.js'
import { validateClientP0 } from '../store/p0.js'
import { checkpointHeader, type Checkpoint } from '../store/checkpoint.js'
import { PopCursor } from './pop-cursor.js'

/** A P0 a client may ask for (not the audit anchors' reserved one). */
function isServable(p0: string): boolean {
  try {
    validateClientP0(p0)
    return true
  } catch {
    return false
  }
}

/** A verified WL3 lookup answer: the latest blob of a P0, its payload and whole file. */
export interface Wl3Answer {
  /** The blob's index row. */
  info: BlobInfo
  /** The raw WL3 payload (opaque). */
  payload: Buffer
  /** The whole signed .cla file. */
  file: Buffer
  /** Strong ETag: the payload sha256 in quotes. */
  etag: string
  /** The Ed25519 signature of `file` was checked in this process. */
  signatureChecked: boolean
}

/** Options of a {@link Wl3Lookup}. */
export interface LookupOptions {
  /**
   * Bytes the cache may hold, counted as each answer's file plus `ENTRY_OVERHEAD`
   * (its index row, views and map entry); least recently used go first. Default 256 MiB;
   * 0 caches nothing. A POP whose every answer fits (its P0s × (WL3 file + 1.25 KiB)) serves
   * every lookup of a P0 it holds from memory after the prefetch, until another process's
   * commit to meta.db drops the cache (docs/operations.md, "Sizing the lookup cache"); the
   * process's RSS stays within this plus a fixed overhead.
   */
  maxBytes?: number
  /**
   * Check the Ed25519 signature on every cache miss too (about 130 µs each). Default false:
   * a miss checks structure, header and payload sha256 against the index row, which an
   * ingest wrote only after verifying the signature over the same bytes (an attacker who
   * could rewrite both the file and the index could rewrite the trusted key as well).
   */
  verifySignature?: boolean
  /** Told when an indexed blob's file is missing or fails verification (queue a repair, alarm). */
  onDamaged?: (info: BlobInfo, err: unknown) => void
}

/** What the lookup cache reports (the POP's /metrics): its size, its bound, hits and misses so far. */
export interface LookupCacheStats {
  /** Bytes held, counted as against `maxBytes`. */
  bytes: number
  /** The bound. */
  maxBytes: number
  /** Answers held (one per P0). */
  answers: number
  /** Lookups answered from the cache since the process started. */
  hits: number
  /** Lookups of a P0 held here that were not. */
  misses: number
  /** Lookups of a P0 this POP holds no blob of (neither a hit nor a miss). */
  notFound: number
}

/** The lookup cache's default bound: 256 MiB. */
export const DEFAULT_CACHE_BYTES = 256 * 1024 * 1024

/**
 * The cache bound of {@link LookupOptions.maxBytes} (the default when undefined), or
 * CLA_ERR_INVALID_OPTION: a whole number of bytes, 0 or more.
 */
export function checkCacheBytes(maxBytes: number | undefined): number {
  const max = maxBytes ?? DEFAULT_CACHE_BYTES
  if (!Number.isSafeInteger(max) || max < 0)
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `the lookup cache's maxBytes must be a whole number of bytes, 0 or more; got ${String(max)}`,
    )
  return max
}

/**
 * What one cached answer costs beyond its file's bytes: the index row's object and strings,
 * the two buffer views, the ETag, the map entry (measured on Node 20: 1.25 KiB of RSS beyond the file;
 * docs/performance.md "Lookups against nginx").
 */
export const ENTRY_OVERHEAD = 1280

/**
 * WL3 lookups on a POP: the latest published blob of a P0, checked against its index row before
 * it is served, with a size-bounded LRU cache kept per P0 (see the file's head).
 */
export class Wl3Lookup {
  private readonly store: BlobStore
  private readonly max: number
  private readonly verifySignature: boolean
  private bytes = 0
  private readonly onDamaged: LookupOptions['onDamaged']
  /**
   * Cached answers in insertion order, each with a "used since it was (re)queued" bit: a
   * hit only sets the bit, eviction gives a used answer a second chance at the end (CLOCK,
   * the usual approximation of LRU). Moving every hit to the end cost two map writes per
   * answer and left the map's head full of deleted slots that each eviction stepped over.
   */
  private readonly cache = new Map<string, { a: Wl3Answer; used: boolean }>()
  private readonly versionStmt: Statement
  private readonly changesStmt: Statement
  private dataVersion = -1
  private changes = -1
  /** meta.db's counters were read in this turn of the event loop. */
  private looked = false
  private readonly rearm = () => {
    this.looked = false
  }
  private freshness: { checkpoint: Checkpoint; header: string } | null | undefined
  private readonly unsubscribe: () => void
  private prefetchRun = 0
  private closed = false
  /** Lookups answered from the cache. */
  hits = 0
  /** Lookups of a P0 held here not answered from the cache. */
  misses = 0
  /** Lookups of a P0 this POP holds no blob of (404). */
  notFound = 0

  constructor(store: BlobStore, opts: LookupOptions = {}) {
    this.store = store
    this.max = checkCacheBytes(opts.maxBytes)
    this.verifySignature = opts.verifySignature ?? false
    this.onDamaged = opts.onDamaged
    this.versionStmt = store.db.prepare('PRAGMA data_version').pluck()
    this.changesStmt = store.db.prepare('SELECT total_changes()').pluck()
    this.dataVersion = this.versionStmt.get() as number
    // a newer version of a cached P0 was published here: that answer is stale (called
    // synchronously right after the commit, before any other lookup can run)
    this.unsubscribe = store.onPublished((infos) => {
      for (const info of infos) this.forget(info.p0)
    })
  }

  /** Cached answers in bytes, as counted against `maxBytes`. */
  get cachedBytes(): number {
    return this.bytes
  }

  /** Cached answers. */
  get cachedAnswers(): number {
    return this.cache.size
  }

  /** The cache's size, bound, hits and misses so far (the POP's /metrics). */
  stats(): LookupCacheStats {
    return {
      bytes: this.bytes,
      maxBytes: this.max,
      answers: this.cache.size,
      hits: this.hits,
      misses: this.misses,
      notFound: this.notFound,
    }
  }

  /**
   * Looks at meta.db's change counters, once per turn of the event loop (the lookups of one
   * batch of readable sockets share one look): a commit by another connection (PRAGMA
   * data_version) drops every cached answer; any change at all (total_changes() too: an
   * audit row, the cursor, a checkpoint) only makes the freshness be read again. This
   * process's own publications need no look: they drop their P0s synchronously.
   */
  private fresh(): void {
    if (this.looked) return
    this.looked = true
    setImmediate(this.rearm)
    const v = this.versionStmt.get() as number
    const c = this.changesStmt.get() as number
    if (v !== this.dataVersion) {
      this.dropAll()
      this.dataVersion = v
    }
    if (c !== this.changes) {
      this.changes = c
      this.freshness = undefined
    }
  }

  private dropAll(): void {
    this.cache.clear()
    this.bytes = 0
    this.freshness = undefined
  }

  private forget(p0: string): void {
    const e = this.cache.get(p0)
    if (e) {
      this.cache.delete(p0)
      this.bytes -= e.a.file.length + ENTRY_OVERHEAD
    }
  }

  /** Makes room for `cost` bytes: the oldest unused answers go, used ones are requeued once. */
  private evictFor(cost: number): void {
    while (this.bytes + cost > this.max && this.cache.size > 0) {
      const [p0, e] = this.cache.entries().next().value as [string, { a: Wl3Answer; used: boolean }]
      this.cache.delete(p0)
      if (e.used) {
        e.used = false
        this.cache.set(p0, e)
      } else {
        this.bytes -= e.a.file.length + ENTRY_OVERHEAD
      }
    }
  }

  /**
   * The newest core checkpoint this POP verified at its cursor (lib/pop-sync/pop-cursor.ts),
   * read again after any change to meta.db: what vaults are told of this POP's freshness (the
   * `Clavitor-Checkpoint` header of every lookup, GET /api/v1/checkpoint). Null before the
   * first verified page.
   */
  checkpoint(): { checkpoint: Checkpoint; header: string } | null {
    this.fresh()
    if (this.freshness === undefined) {
      const cp = new PopCursor(this.store.db).checkpoint()
      this.freshness = cp ? { checkpoint: cp, header: checkpointHeader(cp) } : null
    }
    return this.freshness
  }

  /** Drops every cached answer. */
  invalidate(): void {
    this.dropAll()
  }

  /** Stops following the store's publications and any prefetch (the store is closing). */
  close(): void {
    this.closed = true
    this.prefetchRun++
    this.unsubscribe()
    this.dropAll()
  }

  /**
   * The latest WL3 of `p0`, checked. With `signature: true` (the `.cla` route: a vault will
   * verify that file itself) the Ed25519 signature is checked too, once per cached answer.
   * CLA_ERR_INVALID_P0 (400) / CLA_ERR_P0_RESERVED (400: the audit anchors replicate here
   * like any blob, but are never served) / CLA_ERR_NOT_FOUND (404) / CLA_ERR_SYNC_DAMAGED (503).
   * Synchronous from the index read to the cache: no publication can slip in between.
   */
  latest(p0: string, opts: { signature?: boolean } = {}): Wl3Answer {
    const a = this.latestChecked(p0)
    if (opts.signature && !a.signatureChecked) {
      try {
        verifyCla(a.file, this.store.trustedKeys, a.info.path)
      } catch (err) {
        if (this.cache.get(p0)?.a === a) this.forget(p0)
        this.onDamaged?.(a.info, err)
        throw claError(
          'CLA_ERR_SYNC_DAMAGED',
          "this POP's copy of the WL3 is damaged; it is queued for repair",
          {
            cause: err,
            details: { p0: a.info.p0, seq: a.info.seq },
          },
        )
      }
      a.signatureChecked = true
    }
    return a
  }

  private latestChecked(p0: string): Wl3Answer {
    validateClientP0(p0)
    this.fresh()
    const hit = this.cache.get(p0)
    if (hit) {
      this.hits++
      hit.used = true
      return hit.a
    }
    const info = this.store.index.latest(p0)
    if (!info) {
      // not a miss: no cache could have answered it
      this.notFound++
      throw claError('CLA_ERR_NOT_FOUND', `no WL3 for this P0 on this POP`, { details: { p0 } })
    }
    this.misses++
    const answer = this.load(info)
    const cost = answer.file.length + ENTRY_OVERHEAD
    if (cost <= this.max) {
      this.evictFor(cost)
      // keyed by the row's own string: the request's copy is let go with the request
      this.cache.set(info.p0, { a: answer, used: false })
      this.bytes += cost
    }
    return answer
  }

  /**
   * Fills the cache in the background, one page of index rows per turn of the event loop
   * (lookups go first), each answer read and checked as on a miss, until the cache is full
   * or every P0 was read: a POP that starts meets its first lookups with a warm cache
   * instead of paying a miss each. Evicts nothing; a damaged file is reported (onDamaged)
   * and skipped. Ends at `close()` or when the store closes. Resolves with the answers added.
   */
  async prefetch(pageSize = 32): Promise<number> {
    if (this.closed) return 0
    const run = ++this.prefetchRun
    let after = ''
    let added = 0
    try {
      while (run === this.prefetchRun) {
        const page = this.store.index.filesAfter(after, pageSize)
        if (page.length === 0) break
        for (const f of page) {
          if (this.bytes + f.file_size + ENTRY_OVERHEAD > this.max) return added
          const p0 = f.path.split('/')[1] ?? ''
          if (this.cache.has(p0) || !isServable(p0)) continue
          const info = this.store.index.latest(p0)
          if (!info || info.path !== f.path) continue // an older version
          let answer: Wl3Answer
          try {
            answer = this.load(info)
          } catch {
            continue // reported by load(): queued for repair
          }
          this.cache.set(info.p0, { a: answer, used: false })
          this.bytes += answer.file.length + ENTRY_OVERHEAD
          added++
        }
        after = page[page.length - 1]!.path
        await new Promise((r) => setImmediate(r))
      }
    } catch (err) {
      // the store closed under it: nothing left to warm
      if (this.store.db.open) throw err
    }
    return added
  }

  /** Every version of `p0`, oldest first (index rows only). */
  versions(p0: string): BlobInfo[] {
    validateClientP0(p0)
    const v = this.store.versions(p0)
    if (v.length === 0)
      throw claError('CLA_ERR_NOT_FOUND', `no WL3 for this P0 on this POP`, { details: { p0 } })
    return v
  }

  private load(info: BlobInfo): Wl3Answer {
    let file: Buffer
    try {
      file = this.readChecked(info)
      if (this.verifySignature) verifyCla(file, this.store.trustedKeys, info.path)
    } catch (err) {
      this.onDamaged?.(info, err)
      throw claError(
        'CLA_ERR_SYNC_DAMAGED',
        "this POP's copy of the WL3 is missing or damaged; it is queued for repair",
        {
          cause: err,
          details: { p0: info.p0, seq: info.seq },
        },
      )
    }
    // the payload is a view into the file: one buffer per cached answer
    const payload = file.subarray(file.length - 64 - info.size, file.length - 64)
    return { info, payload, file, etag: `"${info.sha256}"`, signatureChecked: this.verifySignature }
  }

  /**
   * Reads a sealed file and checks it against its index row: its size, structure, every
   * header field and the payload sha256. The row was written by an ingest that checked these
   * very bytes against the core's signed replication log (or their signature); the signature
   * is checked again by the full verify and before a `.cla` is served.
   *
   * A synchronous read (open, one read, close): a WL3 is a few KiB, normally in the page
   * cache, and three system calls on the event loop cost less than a trip through the
   * thread pool per call (nginx's worker reads the same way). The buffer is one of its own
   * (not a slice of Node's shared pool), so a cached answer holds only its own bytes.
   */
  private readChecked(info: BlobInfo): Buffer {
    const want = info.file_size
    const file = readExpectedSync(join(this.store.root, info.path), want)
    const got = file.length
    if (got !== want)
      throw claError(
        'CLA_ERR_HEADER_MISMATCH',
        `${info.path}: the file is ${got > want ? 'longer' : `${got} bytes`}, the index row says ${want}`,
      )
    const d = decodeCla(file, info.path)
    if (
      d.p0 !== info.p0 ||
      d.seq !== info.seq ||
      d.createdAt !== info.created_at ||
      d.size !== info.size ||
      d.fileSize !== info.file_size ||
      d.keyId !== info.key_id ||
      d.sha256 !== info.sha256
    ) {
      throw claError('CLA_ERR_HEADER_MISMATCH', `${info.path}: header differs from the index row`)
    }
    if (createHash('sha256').update(d.payload).digest('hex') !== info.sha256) {
      throw claError('CLA_ERR_BAD_HASH', `${info.path}: payload sha256 differs from the index row`)
    }
    return file
  }
}
