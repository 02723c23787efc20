// WL3 lookups on a POP: the latest blob of a P0 from the SQLite index, its file read and
// checked against that row (structure, header, payload sha256; optionally the signature
// again) before it is served. A bounded cache
// keeps the verified latest answer per P0; it is dropped whenever the database changes
// (PRAGMA data_version for commits by other connections, total_changes() for this one).
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Statement } from 'better-sqlite3'
import { decodeCla, verifyCla } from '../store/format.js'
import type { BlobInfo, BlobStore } from '../store/index.js'
import { claError } from '../errors.js'
import { validateClientP0 } from '../store/p0.js'
import { checkpointHeader, type Checkpoint } from '../store/checkpoint.js'
import { PopCursor } from './pop-cursor.js'

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
  /** Bytes of verified .cla files kept in the cache (least recently used go first). Default 256 MiB. */
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

/**
 * WL3 lookups on a POP: the latest published blob of a P0, checked against its index row before
 * it is served, with a size-bounded LRU cache that is dropped whenever the database changes.
 */
export class Wl3Lookup {
  private readonly store: BlobStore
  private readonly max: number
  private readonly verifySignature: boolean
  private bytes = 0
  private readonly onDamaged: LookupOptions['onDamaged']
  private readonly cache = new Map<string, Wl3Answer>()
  private readonly versionStmt: Statement
  private readonly changesStmt: Statement
  private stamp = ''
  private freshness: { checkpoint: Checkpoint; header: string } | null | undefined
  /** Lookups answered from the cache. */
  hits = 0
  /** Lookups not answered from the cache. */
  misses = 0

  constructor(store: BlobStore, opts: LookupOptions = {}) {
    this.store = store
    this.max = opts.maxBytes ?? 256 * 1024 * 1024
    this.verifySignature = opts.verifySignature ?? false
    this.onDamaged = opts.onDamaged
    this.versionStmt = store.db.prepare('PRAGMA data_version').pluck()
    this.changesStmt = store.db.prepare('SELECT total_changes()').pluck()
  }

  /** Drops every cached answer when the index changed since the last look. */
  private fresh(): void {
    const s = `${this.versionStmt.get() as number}:${this.changesStmt.get() as number}`
    if (s !== this.stamp) {
      this.cache.clear()
      this.bytes = 0
      this.stamp = s
      this.freshness = undefined
    }
  }

  /**
   * The newest core checkpoint this POP verified at its cursor (lib/pop-sync/pop-cursor.ts),
   * read once per database change: what vaults are told of this POP's freshness (the
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
    this.cache.clear()
    this.bytes = 0
    this.stamp = ''
    this.freshness = undefined
  }

  /**
   * The latest WL3 of `p0`, checked. With `signature: true` (the `.cla` route: a vault will
   * verify that file itself) the Ed25519 signature is checked too, once per cached answer.
   * CLA_ERR_INVALID_P0 (400) / CLA_ERR_P0_RESERVED (400: the audit anchors replicate here
   * like any blob, but are never served) / CLA_ERR_NOT_FOUND (404) / CLA_ERR_SYNC_DAMAGED (503).
   */
  async latest(p0: string, opts: { signature?: boolean } = {}): Promise<Wl3Answer> {
    const a = await this.latestChecked(p0)
    if (opts.signature && !a.signatureChecked) {
      try {
        verifyCla(a.file, this.store.trustedKeys, a.info.path)
      } catch (err) {
        if (this.cache.get(p0) === a) {
          this.cache.delete(p0)
          this.bytes -= a.file.length + 200
        }
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

  private async latestChecked(p0: string): Promise<Wl3Answer> {
    validateClientP0(p0)
    this.fresh()
    const hit = this.cache.get(p0)
    if (hit) {
      this.hits++
      // least recently used order: move to the end
      this.cache.delete(p0)
      this.cache.set(p0, hit)
      return hit
    }
    this.misses++
    const info = this.store.index.latest(p0)
    if (!info)
      throw claError('CLA_ERR_NOT_FOUND', `no WL3 for this P0 on this POP`, { details: { p0 } })
    const answer = await this.load(info)
    const cost = answer.file.length + 200
    while (this.bytes + cost > this.max && this.cache.size > 0) {
      const [oldest, old] = this.cache.entries().next().value as [string, Wl3Answer]
      this.cache.delete(oldest)
      this.bytes -= old.file.length + 200
    }
    if (cost <= this.max) {
      this.cache.set(p0, answer)
      this.bytes += cost
    }
    return answer
  }

  /** Every version of `p0`, oldest first (index rows only). */
  versions(p0: string): BlobInfo[] {
    validateClientP0(p0)
    const v = this.store.versions(p0)
    if (v.length === 0)
      throw claError('CLA_ERR_NOT_FOUND', `no WL3 for this P0 on this POP`, { details: { p0 } })
    return v
  }

  private async load(info: BlobInfo): Promise<Wl3Answer> {
    let file: Buffer
    try {
      file = this.verifySignature ? await this.store.readFile(info) : await this.readChecked(info)
    } catch (err) {
      if ((err as { code?: string }).code === 'CLA_ERR_STORE_CLOSED') throw err
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
   * Reads a sealed file and checks it against its index row: structure, every header field
   * and the payload sha256. The row was written by an ingest that verified the core's
   * signature over these very bytes; the signature is checked again by the full verify.
   */
  private async readChecked(info: BlobInfo): Promise<Buffer> {
    const file = await readFile(join(this.store.root, info.path))
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
