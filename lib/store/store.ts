// The WORM blob store: {data}/store/{shard}/{p0}/{created_at}_{random}.cla, indexed in
// {data}/meta.db (table blobs), signed with {data}/keys/signing.key.
//
// BlobStore is the facade: the public API (lifecycle, keys, reads, status) and thin calls
// into one file per concern, each handed the store's shared state (lib/store/context.ts):
//   open.ts     paths, modes, options, init and open (identity, keys, meta adoption)
//   writer.ts   put's write path: group commit, temp file → fsync → link, seal, index
//   ingest.ts   verifyStaged and ingest of staged files (a POP's pull, a repair)
//   tree-ingest.ts  a whole staged tree into an empty store (a new POP's bootstrap)
//   rebuild.ts  verify, rebuild of the index from the files, recovery before a write
//   batch.ts    what those share: p0 folders, folder fsyncs, seal a batch, index rows
//   chain.ts    the replication log's hash chain; rechain.ts keeps `blobs.chain` true;
//   checkpoint.ts  signed checkpoints of it (the feed carries them, POPs serve them)
//   staging.ts  clean-up of {data}/staging
import { mkdir, readFile, rename } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { dataLayout } from '../db/data-dir.js'
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import { blobIndex, INFO_COLS, rowToInfo, type BlobIndex, type BlobInfo } from './blob-index.js'
import { checkExpect } from './checks.js'
import {
  checkOpen,
  exclusive,
  isSealing,
  makeContext,
  stmt,
  warnOnce,
  type StoreContext,
} from './context.js'
import { decodeCursor, encodeCursor } from './cursor.js'
import { writeFileDurable } from './durable.js'
import { parseBlobPath, verifyCla, type DecodedCla } from './format.js'
import type { PublishListener } from './publish-signal.js'
import {
  ingestLocked,
  verifyStaged,
  type IngestOptions,
  type StagedFile,
  type VerifiedStaged,
  type VerifyStagedResult,
} from './ingest.js'
import { signStatement, trustedKeyFromRaw, verifyStatement, type TrustedKey } from './keys.js'
import { liveLockHolder } from './lock.js'
import {
  initStore,
  isInitialized,
  openStore,
  type InitOptions,
  type OpenedStore,
  type Protection,
  type StoreOptions,
  type StoreRole,
} from './open.js'
import { validateP0 } from './p0.js'
import {
  ensureWriter,
  rebuildLocked,
  verifyStore,
  healAtOpen,
  type HealReport,
  type RebuildReport,
  type VerifyReport,
  forgetMissing,
} from './rebuild.js'
import { fillFileHashes, needsFill } from './rechain.js'
import {
  ingestTreeLocked,
  verifyTree,
  type TreeEntry,
  type TreeIngestOptions,
  type VerifiedTree,
  type VerifyTreeOptions,
  type VerifyTreeResult,
} from './tree-ingest.js'
import { chattr, sealDirs, sealFiles } from './seal.js'
import { put, type PutOptions } from './writer.js'

export { PROTECTIONS, storePaths } from './open.js'
export type { InitOptions, Protection, StoreOptions, StoreRole } from './open.js'
export { cleanStaging } from './staging.js'
export type { BlobInfo } from './blob-index.js'
export type { VerifyProblem } from './checks.js'
export type { HealReport, RebuildReport, VerifyReport } from './rebuild.js'
export type { IngestOptions, StagedFile, VerifiedStaged, VerifyStagedResult } from './ingest.js'
export type {
  TreeEntry,
  TreeIngestOptions,
  VerifiedTree,
  VerifyTreeOptions,
  VerifyTreeResult,
} from './tree-ingest.js'
export type { PutOptions } from './writer.js'

/** One page of the change feed (BlobStore.changesAfter). */
export interface ChangesPage {
  /** Published blobs after the input cursor, in (created_at, seq) order. */
  items: BlobInfo[]
  /** Cursor after the last item (the input cursor when the page is empty). */
  next: string | null
  /** True when more items follow `next`. */
  more: boolean
}

/** A store's identity, counts and sealing state (BlobStore.status; `clavitor store status`). */
export interface StoreStatus {
  /** Random id of the store (store.json), 32 hex characters. */
  store_id: string
  /** Goes up by one when a restored store went back in time; POPs then re-baseline. */
  generation: number
  role: StoreRole
  /** Path of the store root, {data}/store. */
  root: string
  /** The signing key id; null on a POP. */
  key_id: string | null
  /** Ids of every trusted key (own key included), sorted. */
  trusted_key_ids: string[]
  /** Index rows, published or not. */
  blobs: number
  /** Distinct P0s indexed. */
  p0s: number
  /** Sum of payload bytes. */
  payload_bytes: number
  /** Sum of whole .cla file bytes. */
  file_bytes: number
  /** Rows whose file is not sealed (sealing off, not honoured here, or a failed chattr). */
  unsealed_rows: number
  /** Blobs kept but never published: no put acknowledged them (blob-index.ts unpublished()). */
  unpublished: number
  /** Highest seq indexed; null when empty. */
  last_seq: number | null
  /** Newest created_at indexed (µs epoch); null when empty. */
  last_created_at: number | null
  /**
   * `honoured`: the probe succeeded and no seal has failed since; `sealing`: files are being
   * sealed; `reason`: why not honoured (probe or last seal failure).
   */
  protection: { mode: Protection; honoured: boolean; sealing: boolean; reason?: string }
  /** The pid holding the writer lock (this process when it holds it); null when none. */
  writer_pid: number | null
}

/**
 * The WORM blob store of one data folder: signed .cla files under {data}/store, indexed in
 * meta.db. Open it with {@link BlobStore.open} or {@link BlobStore.init}; methods throw
 * CLA_ERR_STORE_CLOSED after {@link BlobStore.close}.
 */
export class BlobStore {
  readonly dataDir: string
  readonly root: string
  readonly db: Db
  readonly protection: Protection
  readonly role: StoreRole
  readonly storeId: string
  readonly generation: number

  /** Everything the parts share (lib/store/context.ts). */
  private readonly ctx: StoreContext

  private constructor(opened: OpenedStore) {
    this.ctx = makeContext(opened)
    this.dataDir = opened.opts.dataDir
    this.root = this.ctx.root
    this.db = opened.db
    this.protection = opened.protection
    this.role = opened.identity.role
    this.storeId = opened.identity.store_id
    this.generation = opened.identity.generation
  }

  // ---------------------------------------------------------------------------------
  // lifecycle

  /** True when {data} holds an initialised store. */
  static isInitialized(dataDir: string): boolean {
    return isInitialized(dataDir)
  }

  /**
   * Creates the store in `dataDir` (idempotent: an existing store is opened, and any
   * `trustKeys` are added). Makes {data}/store/00..ff, {data}/staging, {data}/keys (a
   * signing key for role 'core'), the identity file {data}/store.json and the meta rows.
   */
  static async init(opts: InitOptions): Promise<BlobStore> {
    await initStore(opts)
    return BlobStore.open(opts)
  }

  /**
   * Opens an initialised store (CLA_ERR_STORE_NOT_INITIALIZED otherwise), probes once
   * whether the filesystem honours chattr, and — when no live writer holds the lock —
   * cleans the staging folder and heals what a dead writer left or a fresh meta.db lacks
   * (rebuild.ts healAtOpen), so the store is whole from its first read. The writer lock
   * itself is taken at the first write.
   */
  static async open(opts: StoreOptions): Promise<BlobStore> {
    const opened = await openStore(opts)
    const store = new BlobStore(opened)
    if (opened.protection === 'best-effort' && !opened.probe.honoured) {
      warnOnce(
        store.ctx,
        `protection best-effort: files are NOT sealed on this filesystem (${opened.probe.reason})`,
      )
    }
    store.healed = await healAtOpen(store.ctx)
    // rows older than the replication log (schema migration 9) get their file hashes and
    // chain values once, from the files (idempotent: the values are deterministic)
    if (needsFill(store.ctx)) await fillFileHashes(store.ctx)
    return store
  }

  /**
   * What opening healed: `adopted` when a fresh meta.db took over an existing store (its
   * index rebuilt from the files; the old database's other tables are gone — callers alarm),
   * `recovered` the files a dead writer left unindexed; null when nothing needed it or a
   * live writer will do it.
   */
  healed: HealReport | null = null

  /** ms epoch of the last put refused because the disk was full (CLA_ERR_STORAGE_FULL), or null. */
  get lastFullAt(): number | null {
    return this.ctx.lastFullAt
  }

  /** Waits for queued writes, releases the writer lock, closes the database if owned. */
  async close(): Promise<void> {
    const ctx = this.ctx
    if (ctx.closed) return
    ctx.closed = true
    // queued groups may queue further groups: wait until both chains stand still
    for (;;) {
      const m = ctx.mutex
      const st = ctx.stage2
      await m.catch(() => undefined)
      await st
      if (m === ctx.mutex && st === ctx.stage2 && ctx.pending.length === 0) break
    }
    ctx.sealer.close()
    ctx.published.close()
    ctx.lock?.release()
    ctx.lock = null
    if (ctx.ownsDb) this.db.close()
  }

  /**
   * Calls `listener` with the rows each commit of this store instance publishes, right after
   * the commit, in this process (lib/store/publish-signal.ts): a put group, an ingest, a tree
   * ingest, a recovery that publishes. Commits by other processes are not seen here; a core
   * store also rewrites {data}/run/published for them ({@link watchPublished}). Returns the
   * listener's removal.
   */
  onPublished(listener: PublishListener): () => void {
    return this.ctx.published.on(listener)
  }

  // ---------------------------------------------------------------------------------
  // keys and identity

  /** The signing key id, or null for a POP store. */
  get keyId(): string | null {
    return this.ctx.signing?.keyId ?? null
  }

  /** The raw 32-byte signing public key, or null for a POP store. */
  get publicKey(): Buffer | null {
    return this.ctx.signing ? Buffer.from(this.ctx.signing.publicKey) : null
  }

  /** Trusted public keys by id (own key included). */
  get trustedKeys(): ReadonlyMap<string, TrustedKey> {
    return this.ctx.ring
  }

  /** The core's public key, to hand to a POP (`store init --pop --trust-key FILE`). */
  exportPublicKey(): { keyId: string; publicKey: Buffer } {
    const signing = this.ctx.signing
    if (!signing)
      throw claError(
        'CLA_ERR_STORE_NO_SIGNING_KEY',
        'this store has no signing key (a POP replica)',
      )
    return { keyId: signing.keyId, publicKey: Buffer.from(signing.publicKey) }
  }

  /** Adds a trusted public key (raw 32 bytes) to {data}/keys/trusted and to this instance. */
  trustKey(publicKey: Buffer): string {
    const t = trustedKeyFromRaw(publicKey)
    writeFileDurable(join(this.ctx.paths.trusted, `${t.keyId}.pub`), t.publicKey, 0o644)
    this.ctx.ring.set(t.keyId, t)
    return t.keyId
  }

  /**
   * Signs `domain + body` with the store's key (a statement, lib/store/keys.ts): for the
   * core's own records, e.g. audit anchors. The key stays inside the store.
   */
  signStatement(domain: string, body: Buffer): { keyId: string; signature: Buffer } {
    const signing = this.ctx.signing
    if (!signing)
      throw claError(
        'CLA_ERR_STORE_NO_SIGNING_KEY',
        'this store has no signing key (a POP replica); it cannot sign statements',
      )
    return { keyId: signing.keyId, signature: signStatement(signing, domain, body) }
  }

  /** True when `signature` over `domain + body` verifies with the trusted key `keyId`. */
  verifyStatement(domain: string, body: Buffer, keyId: string, signature: Buffer): boolean {
    return verifyStatement(this.ctx.ring, keyId, domain, body, signature)
  }

  /** True when files are being sealed (mode not off and the filesystem honours chattr). */
  get sealing(): boolean {
    return isSealing(this.ctx)
  }

  /**
   * Moves a damaged blob file aside to {data}/quarantine/ (unsealing it and its folder for
   * the move, then sealing the folder again) so a good copy can take its place. The index
   * row stays. Returns where the file went.
   */
  async quarantine(info: BlobInfo): Promise<string> {
    checkOpen(this.ctx)
    const file = join(this.root, info.path)
    const dir = dirname(file)
    const qdir = dataLayout(this.dataDir).quarantine
    await mkdir(qdir, { recursive: true })
    const dest = join(qdir, `${Date.now()}_${info.seq}_${basename(file)}`)
    if (this.sealing) {
      await chattr(['-i'], [file])
      await chattr(['-a'], [dir])
    }
    try {
      await rename(file, dest)
    } finally {
      if (this.sealing) await chattr(['+a'], [dir])
    }
    return dest
  }

  /**
   * Forgets index rows whose file is gone (a restore from an older copy of the store;
   * rebuild.ts forgetMissing): `inTransaction` removes what names them in the same
   * transaction. Returns the forgotten blobs.
   */
  forgetMissing(inTransaction?: (forgotten: readonly BlobInfo[]) => void): BlobInfo[] {
    checkOpen(this.ctx)
    return forgetMissing(this.ctx, inTransaction)
  }

  /**
   * Seals again what lost its flags (a repair, an intruder): `files` +i, `dirs` +a, both
   * relative to the store root. Idempotent; nothing when the store does not seal.
   */
  async reseal(files: readonly string[], dirs: readonly string[]): Promise<void> {
    checkOpen(this.ctx)
    if (!this.sealing) return
    if (files.length) await sealFiles(files.map((f) => join(this.root, f)))
    if (dirs.length) await sealDirs(dirs.map((d) => join(this.root, d)))
  }

  // ---------------------------------------------------------------------------------
  // reads

  /** The index (`blobs`) for reads other code needs: counts, lookups, the feed. */
  get index(): BlobIndex {
    return blobIndex(this.db)
  }

  /**
   * The newest published version of `p0`, or undefined. Throws CLA_ERR_INVALID_P0 on a malformed
   * P0.
   */
  latest(p0: string): BlobInfo | undefined {
    validateP0(p0)
    checkOpen(this.ctx)
    const r = stmt(
      this.ctx,
      `SELECT ${INFO_COLS} FROM blobs WHERE p0 = ? AND published = 1 ORDER BY created_at DESC, seq DESC LIMIT 1`,
    ).get(p0) as Record<string, unknown> | undefined
    return r ? rowToInfo(r) : undefined
  }

  /** Every version of `p0`, oldest first. */
  versions(p0: string): BlobInfo[] {
    validateP0(p0)
    checkOpen(this.ctx)
    const rows = stmt(
      this.ctx,
      `SELECT ${INFO_COLS} FROM blobs WHERE p0 = ? AND published = 1 ORDER BY created_at, seq`,
    ).all(p0) as Record<string, unknown>[]
    return rows.map(rowToInfo)
  }

  /** The blob with sequence number `seq`, published or not; undefined when none. */
  bySeq(seq: number): BlobInfo | undefined {
    checkOpen(this.ctx)
    const r = stmt(this.ctx, `SELECT ${INFO_COLS} FROM blobs WHERE seq = ?`).get(seq) as
      Record<string, unknown> | undefined
    return r ? rowToInfo(r) : undefined
  }

  /** The whole signed .cla bytes, verified (hash, signature, header equals `info`). */
  async readFile(info: BlobInfo): Promise<Buffer> {
    return (await this.readVerified(info)).buf
  }

  /** The payload of a blob, after full verification. */
  async readPayload(info: BlobInfo): Promise<Buffer> {
    return Buffer.from((await this.readVerified(info)).decoded.payload)
  }

  /** Reads a blob's file and verifies it once (hash, signature, header equals `info`). */
  private async readVerified(info: BlobInfo): Promise<{ buf: Buffer; decoded: DecodedCla }> {
    checkOpen(this.ctx)
    const parsed = parseBlobPath(info.path)
    if (!parsed)
      throw claError('CLA_ERR_INVALID_INPUT', `not a blob path: ${JSON.stringify(info.path)}`)
    let buf: Buffer
    try {
      buf = await readFile(join(this.root, info.path))
    } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') {
        throw claError(
          'CLA_ERR_NOT_FOUND',
          `blob file ${info.path} is missing; run clavitor store verify`,
          { cause },
        )
      }
      throw cause
    }
    const decoded = verifyCla(buf, this.ctx.ring, info.path)
    checkExpect(decoded, info.path, info)
    return { buf, decoded }
  }

  /**
   * The page of blobs after `cursor` (null: from the start), in (created_at, seq) order.
   * Rows commit in that order under the writer lock, so a page never skips or repeats.
   */
  changesAfter(cursor: string | null, limit: number): ChangesPage {
    checkOpen(this.ctx)
    if (!Number.isInteger(limit) || limit < 1 || limit > 100_000) {
      throw claError('CLA_ERR_INVALID_INPUT', `limit must be an integer 1..100000; got ${limit}`)
    }
    // the feed's own query (lib/store/blob-index.ts), as BlobInfo
    const rows = this.index.feedAfter(decodeCursor(cursor), limit + 1)
    const more = rows.length > limit
    const items = rows.slice(0, limit).map((r) => rowToInfo({ ...r }))
    const last = items[items.length - 1]
    return { items, next: last ? encodeCursor(last) : cursor, more }
  }

  /** The store's identity, counts and sealing state (one query over the index). */
  status(): StoreStatus {
    const ctx = this.ctx
    checkOpen(ctx)
    const r = stmt(
      ctx,
      `SELECT count(*) AS n, count(DISTINCT p0) AS p0s, coalesce(sum(size), 0) AS payload,
                coalesce(sum(file_size), 0) AS file, coalesce(sum(sealed = 0), 0) AS unsealed,
                coalesce(sum(published = 0), 0) AS unpublished,
                max(seq) AS last_seq, max(created_at) AS last_at FROM blobs`,
    ).get() as Record<string, number | null>
    const reason = !ctx.probe.honoured ? ctx.probe.reason : ctx.sealFailure
    return {
      store_id: this.storeId,
      generation: this.generation,
      role: this.role,
      root: this.root,
      key_id: this.keyId,
      trusted_key_ids: [...ctx.ring.keys()].sort(),
      blobs: r.n ?? 0,
      p0s: r.p0s ?? 0,
      payload_bytes: r.payload ?? 0,
      file_bytes: r.file ?? 0,
      unsealed_rows: r.unsealed ?? 0,
      unpublished: r.unpublished ?? 0,
      last_seq: r.last_seq ?? null,
      last_created_at: r.last_at ?? null,
      protection: {
        mode: this.protection,
        honoured: ctx.probe.honoured && ctx.sealFailure === undefined,
        sealing: this.sealing,
        ...(reason ? { reason } : {}),
      },
      writer_pid: ctx.lock ? process.pid : (liveLockHolder(ctx.paths.lock) ?? null),
    }
  }

  // ---------------------------------------------------------------------------------
  // writes (lib/store/writer.ts, ingest.ts, rebuild.ts)

  /** Stores a new version of `p0`. Resolves once the file is durable, sealed and indexed. */
  put(p0: string, payload: Buffer, opts?: PutOptions): Promise<BlobInfo> {
    return put(this.ctx, p0, payload, opts)
  }

  /**
   * Moves verified, staged .cla files (e.g. an rsync pull) into the store: verifies each
   * (format, size, sha256, signature by a trusted key, header equals `expect`), links it
   * into place (identical bytes already there is success), fsyncs, seals the batch, then
   * inserts the rows and runs `inTransaction` in ONE transaction. Staged names are removed
   * once linked. On any bad file it throws naming it and nothing becomes visible.
   */
  ingest(staged: StagedFile[] | VerifiedStaged, opts: IngestOptions = {}): Promise<BlobInfo[]> {
    try {
      checkOpen(this.ctx)
    } catch (err) {
      return Promise.reject(err)
    }
    return exclusive(this.ctx, () => ingestLocked(this.ctx, staged, opts))
  }

  /**
   * Step 1 of ingest on its own, outside the writer lock: reads and fully verifies staged
   * files (format, size, sha256, Ed25519 by a trusted key, header equals `expect`), so a
   * puller can verify page N+1 while page N is made durable, sealed and indexed. Returns
   * the verified prefix (pass it to ingest, once) and the first file that failed. Ingest
   * then checks each file is the very one verified (inode, size, mtime, ctime) and refuses
   * it otherwise; nothing is visible before ingest.
   */
  async verifyStaged(staged: StagedFile[]): Promise<VerifyStagedResult> {
    checkOpen(this.ctx)
    return verifyStaged(this.ctx, staged)
  }

  /**
   * Reads and checks the files of a staged tree laid out like the store (a new POP's
   * bootstrap): under `dir`, the folders `shards` must hold exactly `entries` (anything else
   * is removed), each checked by its whole sha256 (which the caller authenticated: the
   * core's signed replication log) and header, then sealed where it is. The store itself is
   * not changed; pass the result to {@link ingestTree}.
   */
  async verifyTree(
    dir: string,
    shards: readonly string[],
    entries: readonly TreeEntry[],
    opts: VerifyTreeOptions = {},
  ): Promise<VerifyTreeResult> {
    checkOpen(this.ctx)
    return verifyTree(this.ctx, dir, shards, entries, opts)
  }

  /**
   * Moves verified staged trees into this EMPTY store in bulk (lib/store/tree-ingest.ts):
   * one syncfs, the staged shard folders renamed into place, sealed, every row indexed with
   * `inTransaction` in one transaction. Returns the rows.
   */
  ingestTree(groups: readonly VerifiedTree[], opts: TreeIngestOptions = {}): Promise<BlobInfo[]> {
    try {
      checkOpen(this.ctx)
    } catch (err) {
      return Promise.reject(err)
    }
    return exclusive(this.ctx, () => ingestTreeLocked(this.ctx, groups, opts))
  }

  /** Indexes every valid .cla file that has no index row (fast-glob over the tree). */
  rebuildIndex(): Promise<RebuildReport> {
    try {
      checkOpen(this.ctx)
    } catch (err) {
      return Promise.reject(err)
    }
    return exclusive(this.ctx, async () => {
      await this.ctx.stage2
      await ensureWriter(this.ctx)
      return rebuildLocked(this.ctx)
    })
  }

  /** Checks every file and row: missing, corrupt (hash/signature/header), unindexed, unsealed. */
  async verify(): Promise<VerifyReport> {
    checkOpen(this.ctx)
    return verifyStore(this.ctx)
  }
}
