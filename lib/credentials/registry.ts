// The credential registry: P0 → WL3, each registration a sealed .cla in the WORM store
// plus a `credentials` row linking P0, vault, customer and the blob (blob_seq).
//
// Versions: the registrations of one P0, in blob order, numbered from 1. The newest is
// "latest". Versions are not stored; they are the row's rank among the P0's rows.
//
// Ownership: a P0 belongs to the customer that registered it first. Another customer's
// vault is refused (CLA_ERR_CREDENTIAL_P0_TAKEN); any vault of the same customer may add
// a version.
//
// A registration is visible everywhere or nowhere. Its order, so that bad input changes
// nothing:
//   1. check P0 (reserved ones refused), WL3 size, vault, a replayed idempotency key,
//      subscription status, ownership and the plan's device limit (no writes);
//   2. store.put with an inTransaction hook: the blob's index row, the credentials row and
//      the audit event commit in ONE transaction. If the hook fails (ownership lost to a
//      racing process, a constraint, the disk full), the put rejects and the blob — a sealed
//      file by then, WORM — stays indexed but unpublished: never in the feed, never a P0's
//      latest, so no POP serves what the client was told failed. A crash before that
//      transaction leaves a file no put acknowledged; the store's recovery indexes it
//      unpublished too.
// Registrations of the same P0 are serialised in this process.
//
// Idempotency: a client that lost the answer retries with the same key (header
// `Idempotency-Key`); the key is stored on the credentials row (unique per vault), and a
// retry with the same P0 and WL3 answers the first registration (replayed: true) instead
// of adding a version. The same key with another P0 or WL3 is refused (409).
import { createHash } from 'node:crypto'
import { claError, isClavitorError, isNoSpace, storageFullOr } from '../errors.js'
import type { BlobIndex } from '../store/blob-index.js'
import type { Db } from '../db/open.js'
import { nowMicros } from '../db/open.js'
import { appendEvent } from '../audit/log.js'
import { validateClientP0 } from '../store/p0.js'
import type { BlobInfo, PutOptions } from '../store/index.js'
import { requireDeviceRoom } from './limits.js'
import { requireActiveSubscription, requireVault } from './vaults.js'

/** The part of lib/store's BlobStore the registry uses. */
export interface RegistryStore {
  /** Stores a new version of `p0` (BlobStore.put). */
  put(p0: string, payload: Buffer, opts?: PutOptions): Promise<BlobInfo>
  /** A blob's payload after full verification (BlobStore.readPayload). */
  readPayload(info: BlobInfo): Promise<Buffer>
  /** The store's index (lib/store/blob-index.ts): the blob of a credentials row. */
  readonly index: Pick<BlobIndex, 'bySeq'>
}

export const DEFAULT_MAX_WL3_BYTES = 64 * 1024

/** Options of the {@link CredentialRegistry}. */
export interface RegistryOptions {
  /** Largest WL3 accepted, in bytes. Default 65536 (64 KiB). */
  maxWl3Bytes?: number
}

/** The answer to a registration: the stored blob and the version it became. */
export interface RegisteredCredential {
  /** The registered P0. */
  p0: string
  /** The vault it was registered through. */
  vault_id: string
  /** The blob's sequence number in the store. */
  seq: number
  /** µs epoch of the blob. */
  created_at: number
  /** sha256 of the WL3, lowercase hex. */
  sha256: string
  /** WL3 bytes. */
  size: number
  /** The blob's .cla file, relative to the store root. */
  path: string
  /** This registration's version of the P0 (1 = first). */
  version: number
  /** True when an idempotency key matched an earlier registration, which this is. */
  replayed: boolean
}

/** One P0 of a customer in a list: its version count and latest version. */
export interface CredentialSummary {
  p0: string
  /** Vault of the latest version. */
  vault_id: string
  /** Number of versions. */
  versions: number
  /** µs epoch of the first registration. */
  first_registered_at: number
  /** The latest version's blob (created_at in µs, size in bytes, sha256 hex). */
  latest: {
    version: number
    seq: number
    created_at: number
    sha256: string
    size: number
    path: string
  }
}

/** A WL3 as read back: the version asked for, its blob metadata and payload. */
export interface Wl3 {
  p0: string
  /** This version's number (1 = first). */
  version: number
  /** How many versions the P0 has. */
  versions: number
  /** The blob's sequence number in the store. */
  seq: number
  /** µs epoch of the blob. */
  created_at: number
  /** sha256 of the payload, lowercase hex. */
  sha256: string
  /** Payload bytes. */
  size: number
  /** The WL3 bytes (opaque), verified against the signed .cla. */
  payload: Buffer
}

/** One page of a list paged by key. */
export interface Page<T> {
  items: T[]
  /** Pass as `after` for the next page; null on the last page. */
  next: string | null
}

/**
 * The P0 → WL3 registry: each registration a signed .cla in the WORM store plus a `credentials`
 * row, committed together. A P0 belongs to the customer that registered it first.
 */
export class CredentialRegistry {
  /** Largest WL3 accepted, in bytes. */
  readonly maxWl3Bytes: number
  #locks = new Map<string, Promise<unknown>>()

  constructor(
    readonly db: Db,
    readonly store: RegistryStore,
    opts: RegistryOptions = {},
  ) {
    const max = opts.maxWl3Bytes ?? DEFAULT_MAX_WL3_BYTES
    if (!Number.isSafeInteger(max) || max < 1) {
      throw claError(
        'CLA_ERR_INVALID_OPTION',
        `maxWl3Bytes must be a positive integer, got ${String(opts.maxWl3Bytes)}`,
      )
    }
    this.maxWl3Bytes = max
  }

  /** Checks a WL3's size; throws CLA_ERR_INVALID_INPUT (empty) or CLA_ERR_PAYLOAD_TOO_LARGE. */
  checkWl3(wl3: Buffer): void {
    if (wl3.length === 0) {
      throw claError('CLA_ERR_INVALID_INPUT', 'wl3 is empty', { details: { field: 'wl3' } })
    }
    if (wl3.length > this.maxWl3Bytes) {
      throw claError(
        'CLA_ERR_PAYLOAD_TOO_LARGE',
        `wl3 is ${wl3.length} bytes; the limit is ${this.maxWl3Bytes}`,
        {
          details: { field: 'wl3', size: wl3.length, limit: this.maxWl3Bytes },
        },
      )
    }
  }

  /** The customer that owns a P0 (registered it first), if any. */
  ownerOf(p0: string): string | undefined {
    const row = this.db
      .prepare('SELECT customer_id FROM credentials WHERE p0 = ? ORDER BY blob_seq LIMIT 1')
      .get(p0) as { customer_id: string } | undefined
    return row?.customer_id
  }

  #refuseIfTaken(p0: string, customerId: string): void {
    const owner = this.ownerOf(p0)
    if (owner !== undefined && owner !== customerId) {
      throw claError('CLA_ERR_CREDENTIAL_P0_TAKEN', 'this P0 is registered by another customer', {
        details: { p0 },
      })
    }
  }

  async #serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(key) ?? Promise.resolve()
    const run = prev.then(fn, fn)
    const tail = run.catch(() => undefined)
    this.#locks.set(key, tail)
    try {
      return await run
    } finally {
      if (this.#locks.get(key) === tail) this.#locks.delete(key)
    }
  }

  /**
   * Registers a WL3 for a P0 through a vault: a new P0, or a new version of a known one.
   * `actor` (default `vault:<id>`) is written to the audit event. With `idempotencyKey`,
   * a retry of the same registration answers the first one (replayed: true).
   */
  async register(input: {
    vaultId: string
    p0: string
    wl3: Buffer
    actor?: string
    idempotencyKey?: string
  }): Promise<RegisteredCredential> {
    const p0 = input.p0
    validateClientP0(p0)
    this.checkWl3(input.wl3)
    const key = input.idempotencyKey
    if (key !== undefined) checkIdempotencyKey(key)
    const vault = requireVault(this.db, input.vaultId)
    const sha256 = createHash('sha256').update(input.wl3).digest('hex')
    const replay = () => (key === undefined ? undefined : this.#replay(vault.id, key, p0, sha256))
    const earlier = replay()
    if (earlier) return earlier
    requireActiveSubscription(this.db, vault)
    return this.#serial(p0, async () => {
      const raced = replay() // a retry that waited behind its first attempt
      if (raced) return raced
      this.#refuseIfTaken(p0, vault.customer_id)
      requireDeviceRoom(this.db, vault, p0) // before writing: a refusal stores nothing
      let done: RegisteredCredential | undefined
      let info: BlobInfo
      try {
        info = await this.store.put(p0, input.wl3, {
          // runs in the transaction that indexes the blob: all of it commits, or none
          inTransaction: (blob) => {
            this.#refuseIfTaken(p0, vault.customer_id)
            // again where it counts: two new devices racing for the last place
            requireDeviceRoom(this.db, vault, p0)
            this.db
              .prepare(
                'INSERT INTO credentials (p0, vault_id, customer_id, blob_seq, created_at, idempotency_key) VALUES (?, ?, ?, ?, ?, ?)',
              )
              .run(p0, vault.id, vault.customer_id, blob.seq, nowMicros(), key ?? null)
            const version = this.#versionOf(p0, blob.seq)
            appendEvent(this.db, {
              kind: 'credential.register',
              actor: input.actor ?? `vault:${vault.id}`,
              outcome: 'ok',
              data: {
                p0,
                vault: vault.id,
                customer: vault.customer_id,
                seq: blob.seq,
                version,
                sha256: blob.sha256,
              },
            })
            done = registered(blob, vault.id, version, false)
          },
        })
      } catch (cause) {
        // Our own refusals (P0 taken by a racing process, audit log down, disk full) keep
        // their code; a full disk met by the credentials row is the same retryable refusal.
        if (isClavitorError(cause)) throw cause
        if (isNoSpace(cause)) throw storageFullOr(cause, 'the registration')
        // A second attempt with the same key that another process committed first.
        const other = replay()
        if (other) return other
        throw claError(
          'CLA_ERR_INTERNAL',
          'the credential could not be registered; nothing was published',
          { cause, details: { p0 } },
        )
      }
      if (!done)
        throw claError('CLA_ERR_INTERNAL', `blob ${info.seq} was indexed without its registration`)
      return done
    })
  }

  /** The registration an idempotency key names, if the same P0 and WL3; a conflict otherwise. */
  #replay(
    vaultId: string,
    key: string,
    p0: string,
    sha256: string,
  ): RegisteredCredential | undefined {
    const row = this.db
      .prepare('SELECT p0, blob_seq FROM credentials WHERE vault_id = ? AND idempotency_key = ?')
      .get(vaultId, key) as { p0: string; blob_seq: number } | undefined
    if (!row) return undefined
    const blob = this.store.index.bySeq(row.blob_seq)
    if (row.p0 !== p0 || !blob || blob.sha256 !== sha256) {
      throw claError(
        'CLA_ERR_IDEMPOTENCY_CONFLICT',
        'this idempotency key was used for another registration; use a new key',
        { details: { p0, registered_p0: row.p0 } },
      )
    }
    return registered(blob, vaultId, this.#versionOf(p0, blob.seq), true)
  }

  #versionOf(p0: string, seq: number): number {
    return this.db
      .prepare('SELECT COUNT(*) FROM credentials WHERE p0 = ? AND blob_seq <= ?')
      .pluck()
      .get(p0, seq) as number
  }

  /**
   * A customer's credentials, one entry per P0 (latest version's metadata), by P0. A P0
   * whose latest blob the index lacks is left out; the page is still filled from the P0s
   * after it, and `next` is null only when no listed P0 follows.
   */
  list(customerId: string, opts: { limit?: number; after?: string } = {}): Page<CredentialSummary> {
    const limit = clampLimit(opts.limit)
    const q = this.db.prepare(
      `WITH agg AS (
         SELECT p0, COUNT(*) AS versions, MAX(blob_seq) AS seq, MIN(created_at) AS first_at
         FROM credentials WHERE customer_id = @customer AND p0 > @after
         GROUP BY p0 ORDER BY p0 LIMIT @limit)
       SELECT agg.p0, agg.versions, agg.seq, agg.first_at, c.vault_id
       FROM agg JOIN credentials c ON c.blob_seq = agg.seq
       ORDER BY agg.p0`,
    )
    type Row = { p0: string; versions: number; seq: number; first_at: number; vault_id: string }
    return pageByKey(
      (after, n) => q.all({ customer: customerId, after, limit: n }) as Row[],
      (r) => r.p0,
      // the latest version's blob from the store's index (it owns `blobs`)
      (r): CredentialSummary | null => {
        const b = this.store.index.bySeq(r.seq)
        if (!b) return null
        return {
          p0: r.p0,
          vault_id: r.vault_id,
          versions: r.versions,
          first_registered_at: r.first_at,
          latest: {
            version: r.versions,
            seq: r.seq,
            created_at: b.created_at,
            sha256: b.sha256,
            size: b.size,
            path: b.path,
          },
        }
      },
      limit,
      opts.after ?? '',
    )
  }

  /**
   * The WL3 of a customer's P0: the latest version, or `version` (1 = first). A P0 of
   * another customer answers exactly like an unknown one (CLA_ERR_NOT_FOUND).
   */
  async latestWl3(customerId: string, p0: string, opts: { version?: number } = {}): Promise<Wl3> {
    validateClientP0(p0)
    const seqs = this.db
      .prepare(
        'SELECT blob_seq FROM credentials WHERE p0 = ? AND customer_id = ? ORDER BY blob_seq',
      )
      .all(p0, customerId) as Array<{ blob_seq: number }>
    if (seqs.length === 0)
      throw claError('CLA_ERR_NOT_FOUND', 'no credential with this P0 for this customer', {
        details: { p0 },
      })
    const version = opts.version ?? seqs.length
    if (!Number.isSafeInteger(version) || version < 1 || version > seqs.length) {
      throw claError(
        'CLA_ERR_NOT_FOUND',
        `version ${version} does not exist; this P0 has versions 1 to ${seqs.length}`,
        {
          details: { p0, version, versions: seqs.length },
        },
      )
    }
    const seq = seqs[version - 1]!.blob_seq
    const blob = this.store.index.bySeq(seq)
    if (!blob)
      throw claError(
        'CLA_ERR_INTERNAL',
        `credentials row names blob ${seq} that the store index does not hold`,
      )
    const payload = await this.store.readPayload(blob)
    return {
      p0,
      version,
      versions: seqs.length,
      seq: blob.seq,
      created_at: blob.created_at,
      sha256: blob.sha256,
      size: blob.size,
      payload,
    }
  }
}

function registered(
  blob: BlobInfo,
  vaultId: string,
  version: number,
  replayed: boolean,
): RegisteredCredential {
  return {
    p0: blob.p0,
    vault_id: vaultId,
    seq: blob.seq,
    created_at: blob.created_at,
    sha256: blob.sha256,
    size: blob.size,
    path: blob.path,
    version,
    replayed,
  }
}

/** An idempotency key: 1 to 255 visible ASCII characters (a UUID, say). */
export function checkIdempotencyKey(key: string): void {
  if (typeof key !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(key)) {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      'an idempotency key is 1 to 255 visible ASCII characters',
      { details: { field: 'idempotency_key' } },
    )
  }
}

/**
 * One page of at most `limit` items, paged by key, from rows some of which may be left out
 * (`keep` returns null: e.g. a row whose blob the index lacks). `fetch(after, n)` returns up
 * to n rows with keys after `after`, in key order. Rows are fetched again past the ones
 * left out until the page is full and one more item is known to follow, or the rows run
 * out: `next` is null only when nothing is left after the page, never because rows left
 * out made a batch look short.
 */
export function pageByKey<R, T>(
  fetch: (after: string, n: number) => R[],
  keyOf: (row: R) => string,
  keep: (row: R) => T | null,
  limit: number,
  after = '',
): Page<T> {
  const kept: Array<{ item: T; key: string }> = []
  for (let cursor = after; kept.length <= limit;) {
    const batch = fetch(cursor, limit + 1)
    for (const row of batch) {
      cursor = keyOf(row)
      const item = keep(row)
      if (item !== null) kept.push({ item, key: cursor })
      if (kept.length > limit) break
    }
    if (batch.length < limit + 1) break // nothing after the last row read
  }
  const page = kept.slice(0, limit)
  return {
    items: page.map((k) => k.item),
    next: kept.length > limit ? page[page.length - 1]!.key : null,
  }
}

/** A page size from the caller: default `dflt`, at least 1, at most `max`, truncated. */
export function clampLimit(limit: number | undefined, dflt = 100, max = 1000): number {
  return Math.min(Math.max(Math.trunc(limit ?? dflt), 1), max)
}

/**
 * Removes the registrations of blobs a restore found gone (lib/restore.ts): run inside
 * the store's forgetMissing transaction, so the credentials rows and their blobs' rows go
 * together. Returns how many rows went. The devices re-register (their client sees the
 * P0's older version, or 404 for a P0 registered only then).
 */
export function forgetRegistrations(db: Db, seqs: readonly number[]): number {
  const del = db.prepare('DELETE FROM credentials WHERE blob_seq = ?')
  let n = 0
  for (const seq of seqs) n += del.run(seq).changes
  return n
}
