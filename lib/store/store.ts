// The WORM blob store: {data}/store/{shard}/{p0}/{created_at}_{random}.cla, indexed in
// {data}/meta.db (table blobs), signed with {data}/keys/signing.key.
//
// Write path (put, group-committed): under the writer lock, assign seq and created_at,
// encode + sign, write each temp file in {data}/staging (same filesystem, never +a),
// fsync, link into place (link never overwrites), unlink the temp name, fsync the p0 and
// shard folders, seal the batch (one chattr for files, one for new folders), then index
// the batch in one SQLite transaction. A put resolves only after its row commits.
//
// Ingest (POPs): verify every staged file, make the staged data durable (one syncfs of the
// store's filesystem for a large batch, else an fsync per file), rename whole staged p0
// folders into place when the store has no folder for that p0 yet (else mkdir + link), make
// the directory entries durable (syncfs again, else folder fsyncs), seal, then index the
// batch and run the caller's inTransaction (the POP's cursor) in one SQLite transaction.
import { randomBytes } from 'node:crypto'
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  chmodSync,
  fchmodSync,
  lstatSync,
  statSync,
  rmSync,
  openSync,
  closeSync,
  unlinkSync,
  type BigIntStats,
} from 'node:fs'
import { copyFile, mkdir, open, readFile, rename, unlink } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import fg from 'fast-glob'
import { dirtyBytes } from './dirty.js'
import { claError, isClavitorError, type ClavitorError } from '../errors.js'
import type { Statement } from 'better-sqlite3'
import { dataLayout, ensureDataDir } from '../db/data-dir.js'
import { blobIndex, INFO_COLS, rowToInfo, type BlobIndex, type BlobInfo } from './blob-index.js'
import { checkExpect, infoOf, problemOf, type VerifyProblem } from './checks.js'
import {
  fsyncDir,
  fsyncDirSync,
  fsyncFd,
  linkNoClobber,
  mapLimit,
  readRegularFileSync,
  writeAllSync,
  writeFileDurable,
} from './durable.js'
import { openDb, type Db } from '../db/open.js'
import { getMeta, setMeta } from '../db/meta.js'
import {
  blobFileName,
  decodeCla,
  encodeCla,
  parseBlobPath,
  verifyCla,
  verifyClaAsync,
  type DecodedCla,
} from './format.js'
import {
  generateSigningKey,
  makeKeyRing,
  parsePublicKeyFile,
  signStatement,
  signingKeyFromSeed,
  trustedKeyFromRaw,
  verifyStatement,
  type SigningKey,
  type TrustedKey,
} from './keys.js'
import { acquireWriterLock, liveLockHolder, type WriterLock } from './lock.js'
import { shardOf, validateP0 } from './p0.js'
import { decodeCursor, encodeCursor } from './cursor.js'
import {
  probeSealing,
  readAttrs,
  hasFlag,
  sealDirs,
  Sealer,
  unsealTree,
  type ProbeResult,
  sealFiles,
  chattr,
} from './seal.js'

export type Protection = 'enforce' | 'best-effort' | 'off'
export const PROTECTIONS: readonly Protection[] = ['enforce', 'best-effort', 'off']
export type StoreRole = 'core' | 'pop'

export type { BlobInfo } from './blob-index.js'

export interface StoreOptions {
  /** The data folder ({data}/store, {data}/staging, {data}/keys, {data}/meta.db). */
  dataDir: string
  /** Use this open database instead of opening {data}/meta.db (not closed by close()). */
  db?: Db
  /** Default 'best-effort'. */
  protection?: Protection
  /** Extra trusted public keys (raw 32 bytes) on top of {data}/keys/trusted/*.pub and the own key. */
  trustedKeys?: Buffer[]
  /** µs clock for created_at; default Date.now() * 1000. */
  clock?: () => number
  /** Where the one-time protection warning goes; default process.emitWarning. */
  onWarning?: (message: string) => void
  /** Largest payload put() accepts, in bytes; default 1 MiB. */
  maxPayloadBytes?: number
  /** Most puts committed in one group; default 512. */
  maxBatch?: number
  /**
   * An ingest batch of at least this many files is made durable with two syncfs(2) of the
   * store's filesystem (coreutils `sync -f`) instead of an fsync per file and per folder.
   * syncfs also flushes whatever else is dirty on that filesystem, a cost that only pays
   * off over a large batch. Default 200 on Linux (0 = always), Infinity elsewhere (never).
   */
  ingestSyncfsMin?: number
  /**
   * A smaller batch (16 files or more) also uses syncfs when the machine's page cache holds
   * at most this many dirty + writeback bytes (/proc/meminfo): the syncfs then has little
   * else to write. Default 32 MiB on Linux; 0 = never.
   */
  ingestSyncfsMaxDirty?: number
}

export interface InitOptions extends StoreOptions {
  /** 'core' (default) makes a signing key; 'pop' makes none and needs trustKeys. */
  role?: StoreRole
  /** Public keys (raw 32 bytes) to write into {data}/keys/trusted/. */
  trustKeys?: Buffer[]
  /** Fixed signing seed (raw 32 bytes), for test vectors; default random. */
  seed?: Buffer
}

export interface ChangesPage {
  items: BlobInfo[]
  /** Cursor after the last item (the input cursor when the page is empty). */
  next: string | null
  /** True when more items follow `next`. */
  more: boolean
}

export type { VerifyProblem } from './checks.js'

export interface VerifyReport {
  ok: boolean
  /** .cla files found on disk. */
  files: number
  /** Index rows. */
  indexed: number
  /** Index rows whose file is absent. */
  missing: string[]
  /** Files that fail structure, hash, signature, or disagree with their index row. */
  corrupt: VerifyProblem[]
  /** Files (valid or not) with no index row. */
  unindexed: string[]
  /** Files without +i and folders without +a, when sealing is in force. */
  unsealed: string[]
  /** False when sealing is not in force, so `unsealed` was not checked. */
  sealChecked: boolean
}

export interface RebuildReport {
  scanned: number
  alreadyIndexed: number
  indexed: number
  corrupt: VerifyProblem[]
  /** Valid files whose seq or (created_at, seq) is taken by another indexed file. */
  conflicts: string[]
}

export interface StoreStatus {
  store_id: string
  generation: number
  role: StoreRole
  root: string
  key_id: string | null
  trusted_key_ids: string[]
  blobs: number
  p0s: number
  payload_bytes: number
  file_bytes: number
  unsealed_rows: number
  last_seq: number | null
  last_created_at: number | null
  protection: { mode: Protection; honoured: boolean; sealing: boolean; reason?: string }
  writer_pid: number | null
}

export interface StagedFile {
  /** Absolute path of a staged .cla file (consumed on success). */
  file: string
  /** What the feed said; every given field must equal the file's header. */
  expect?: Partial<BlobInfo>
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

interface VerifiedItem {
  staged: string
  info: BlobInfo
  bytes: Buffer
  /** Identity of the staged file when it was read: ingest refuses it if it changed since. */
  stat: { ino: bigint; size: bigint; mtimeNs: bigint; ctimeNs: bigint }
}

export interface IngestOptions {
  /** Runs inside the one transaction that inserts the index rows (e.g. advance a cursor). */
  inTransaction?: (db: Db) => void
}

interface Identity {
  format: 1
  store_id: string
  generation: number
  role: StoreRole
  created_at: number
}

interface PendingPut {
  p0: string
  payload: Buffer
  resolve: (info: BlobInfo) => void
  reject: (err: unknown) => void
}

/** The store's part of the data folder (lib/db/data-dir.ts has the whole layout). */
export function storePaths(dataDir: string) {
  const d = dataLayout(dataDir)
  return {
    root: d.store,
    staging: d.staging,
    keys: d.keys.dir,
    signingKey: d.keys.signingKey,
    signingPub: d.keys.signingPub,
    trusted: d.keys.trusted,
    db: d.db,
    lock: d.storeLock,
    identity: d.storeIdentity,
  }
}

/**
 * The store's folders are 0755 and its blobs 0444, set explicitly: the rsync daemon reads
 * them as `nobody` inside a chroot of the store root, and the services run with
 * `UMask=0077`, which would make them 0700/0400 (lib/db/data-dir.ts says why {data}
 * above them is 0700 all the same).
 */
const STORE_DIR_MODE = 0o755
const BLOB_FILE_MODE = 0o444

/** mkdir, then the exact mode (mkdir's own is masked by the umask). EEXIST is thrown. */
function publicDir(dir: string): void {
  mkdirSync(dir)
  chmodSync(dir, STORE_DIR_MODE)
}

const SHARDS = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))
function checkProtection(p: unknown): Protection {
  if (p === undefined) return 'best-effort'
  if (typeof p === 'string' && (PROTECTIONS as readonly string[]).includes(p))
    return p as Protection
  throw claError(
    'CLA_ERR_INVALID_OPTION',
    `protection must be one of ${PROTECTIONS.join(', ')}; got ${String(p)}`,
  )
}

export class BlobStore {
  readonly dataDir: string
  readonly root: string
  readonly db: Db
  readonly protection: Protection
  readonly role: StoreRole
  readonly storeId: string
  readonly generation: number

  private readonly paths: ReturnType<typeof storePaths>
  private readonly ownsDb: boolean
  private readonly signing: SigningKey | undefined
  private readonly ring: Map<string, TrustedKey>
  private readonly clock: () => number
  private readonly warn: (message: string) => void
  private readonly maxPayloadBytes: number
  private readonly maxBatch: number
  private readonly probe: ProbeResult
  private warned = false
  private sealFailure: string | undefined

  private closed = false
  private lock: WriterLock | null = null
  private recoverNeeded: boolean
  private lastSeq = 0
  private lastCreatedAt = 0
  private mutex: Promise<unknown> = Promise.resolve()
  /** Seal-and-index stage of put groups, chained so rows commit in seq order. */
  private stage2: Promise<unknown> = Promise.resolve()
  private stage2Failure: unknown = undefined
  private pending: PendingPut[] = []
  private readonly sealer = new Sealer()
  /** ingest batches this large are made durable with two syncfs(2), not 2×N fsyncs. */
  private readonly syncfsMin: number
  private readonly syncfsMaxDirty: number
  /** Batches made by verifyStaged and not yet ingested. */
  private readonly verifiedBatches = new WeakMap<VerifiedStaged, VerifiedItem[]>()
  private flushQueued = false

  private constructor(args: {
    opts: StoreOptions
    identity: Identity
    db: Db
    ownsDb: boolean
    signing: SigningKey | undefined
    ring: Map<string, TrustedKey>
    probe: ProbeResult
    protection: Protection
    recoverNeeded: boolean
  }) {
    const { opts } = args
    this.paths = storePaths(opts.dataDir)
    this.dataDir = opts.dataDir
    this.root = this.paths.root
    this.db = args.db
    this.ownsDb = args.ownsDb
    this.protection = args.protection
    this.role = args.identity.role
    this.storeId = args.identity.store_id
    this.generation = args.identity.generation
    this.signing = args.signing
    this.ring = args.ring
    this.probe = args.probe
    this.recoverNeeded = args.recoverNeeded
    this.clock = opts.clock ?? (() => Date.now() * 1000)
    this.warn = opts.onWarning ?? ((m) => process.emitWarning(m, { code: 'CLAVITOR_PROTECTION' }))
    this.maxPayloadBytes = opts.maxPayloadBytes ?? 1024 * 1024
    this.maxBatch = opts.maxBatch ?? 512
    this.syncfsMin = opts.ingestSyncfsMin ?? (process.platform === 'linux' ? 200 : Infinity)
    this.syncfsMaxDirty =
      opts.ingestSyncfsMaxDirty ?? (process.platform === 'linux' ? 32 * 1024 * 1024 : 0)
  }

  // ---------------------------------------------------------------------------------
  // lifecycle

  /** True when {data} holds an initialised store. */
  static isInitialized(dataDir: string): boolean {
    return existsSync(storePaths(dataDir).identity)
  }

  /**
   * Creates the store in `dataDir` (idempotent: an existing store is opened, and any
   * `trustKeys` are added). Makes {data}/store/00..ff, {data}/staging, {data}/keys (a
   * signing key for role 'core'), the identity file {data}/store.json and the meta rows.
   */
  static async init(opts: InitOptions): Promise<BlobStore> {
    checkDataDir(opts.dataDir)
    const protection = checkProtection(opts.protection)
    const role = opts.role ?? 'core'
    if (role !== 'core' && role !== 'pop')
      throw claError('CLA_ERR_INVALID_OPTION', `role must be core or pop; got ${String(role)}`)
    const p = storePaths(opts.dataDir)
    for (const k of opts.trustKeys ?? []) trustedKeyFromRaw(k) // validate before writing anything
    if (
      role === 'pop' &&
      !BlobStore.isInitialized(opts.dataDir) &&
      (opts.trustKeys ?? []).length === 0
    ) {
      throw claError(
        'CLA_ERR_INVALID_OPTION',
        "a POP store needs the core's public key: pass --trust-key FILE",
      )
    }
    ensureDataDir(opts.dataDir)
    if (!existsSync(p.root)) {
      mkdirSync(p.root)
      chmodSync(p.root, STORE_DIR_MODE) // exact, whatever the umask (see publicDir)
    }
    mkdirSync(p.staging, { recursive: true })
    mkdirSync(p.trusted, { recursive: true, mode: 0o700 })
    const newShards: string[] = []
    for (const s of SHARDS) {
      const dir = join(p.root, s)
      if (!existsSync(dir)) {
        publicDir(dir)
        newShards.push(dir)
      }
    }
    if (newShards.length > 0) fsyncDirSync(p.root)
    for (const k of opts.trustKeys ?? []) {
      const t = trustedKeyFromRaw(k)
      writeFileDurable(join(p.trusted, `${t.keyId}.pub`), t.publicKey, 0o644)
    }
    if (!BlobStore.isInitialized(opts.dataDir)) {
      if (role === 'core' && !existsSync(p.signingKey)) {
        const key = opts.seed ? signingKeyFromSeed(opts.seed) : generateSigningKey()
        writeFileDurable(p.signingPub, key.publicKey, 0o644)
        writeFileDurable(p.signingKey, key.seed, 0o600)
      }
      if (protection !== 'off') {
        const probe = await probeSealing(p.staging)
        if (probe.honoured) await sealDirs([p.root, ...SHARDS.map((s) => join(p.root, s))])
        else if (protection === 'enforce') {
          throw claError(
            'CLA_ERR_SEAL_UNSUPPORTED',
            `protection is enforce but ${p.root} cannot be sealed: ${probe.reason}`,
          )
        }
      }
      const identity: Identity = {
        format: 1,
        store_id: randomBytes(16).toString('hex'),
        generation: 1,
        role,
        created_at: Date.now() * 1000,
      }
      const db = opts.db ?? openDb(p.db)
      try {
        db.transaction(() => {
          setMeta(db, 'store_id', identity.store_id)
          setMeta(db, 'store_generation', String(identity.generation))
          setMeta(db, 'store_role', identity.role)
        })()
      } finally {
        if (!opts.db) db.close()
      }
      // Written last: a half-made store is "not initialised" and init simply runs again.
      writeFileDurable(p.identity, JSON.stringify(identity, null, 2) + '\n', 0o644)
    }
    return BlobStore.open(opts)
  }

  /**
   * Opens an initialised store (CLA_ERR_STORE_NOT_INITIALIZED otherwise), probes once
   * whether the filesystem honours chattr, and cleans the staging folder when no live
   * writer holds the lock. The writer lock itself is taken at the first write.
   */
  static async open(opts: StoreOptions): Promise<BlobStore> {
    checkDataDir(opts.dataDir)
    const protection = checkProtection(opts.protection)
    const p = storePaths(opts.dataDir)
    if (!existsSync(p.identity) || !existsSync(p.root)) {
      throw claError(
        'CLA_ERR_STORE_NOT_INITIALIZED',
        `no store in ${opts.dataDir}; run: clavitor store init --data ${opts.dataDir}`,
      )
    }
    let identity: Identity
    try {
      identity = JSON.parse(readFileSync(p.identity, 'utf8')) as Identity
    } catch (cause) {
      throw claError('CLA_ERR_INVALID_OPTION', `${p.identity} is not readable JSON`, { cause })
    }
    let signing: SigningKey | undefined
    if (existsSync(p.signingKey)) signing = signingKeyFromSeed(readFileSync(p.signingKey))
    const ring = makeKeyRing([])
    if (signing) ring.set(signing.keyId, trustedKeyFromRaw(signing.publicKey))
    for (const f of existsSync(p.trusted) ? readdirSync(p.trusted) : []) {
      if (!f.endsWith('.pub')) continue
      const t = trustedKeyFromRaw(
        parsePublicKeyFile(readFileSync(join(p.trusted, f)), join(p.trusted, f)),
      )
      ring.set(t.keyId, t)
    }
    for (const k of opts.trustedKeys ?? []) {
      const t = trustedKeyFromRaw(k)
      ring.set(t.keyId, t)
    }
    mkdirSync(p.staging, { recursive: true })
    const holder = liveLockHolder(p.lock)
    if (holder === undefined) await cleanStaging(p.staging)
    const probe: ProbeResult = await probeSealing(p.staging)
    if (protection === 'enforce' && !probe.honoured) {
      throw claError(
        'CLA_ERR_SEAL_UNSUPPORTED',
        `protection is enforce but this filesystem cannot seal files: ${probe.reason}`,
      )
    }
    const ownsDb = !opts.db
    const db = opts.db ?? openDb(p.db)
    let recoverNeeded = false
    try {
      const metaId = getMeta(db, 'store_id')
      if (metaId === null) {
        // A fresh meta.db beside an existing store: adopt it and rebuild the index first thing.
        db.transaction(() => {
          setMeta(db, 'store_id', identity.store_id)
          setMeta(db, 'store_generation', String(identity.generation))
          setMeta(db, 'store_role', identity.role)
        })()
        recoverNeeded = true
      } else if (metaId !== identity.store_id) {
        throw claError(
          'CLA_ERR_INVALID_OPTION',
          `${p.db} belongs to store ${metaId} but ${p.identity} names ${identity.store_id}; wrong data folder?`,
        )
      }
    } catch (err) {
      if (ownsDb) db.close()
      throw err
    }
    const store = new BlobStore({
      opts,
      identity,
      db,
      ownsDb,
      signing,
      ring,
      probe,
      protection,
      recoverNeeded,
    })
    if (protection === 'best-effort' && !probe.honoured) {
      store.warnOnce(
        `protection best-effort: files are NOT sealed on this filesystem (${probe.reason})`,
      )
    }
    return store
  }

  /** Waits for queued writes, releases the writer lock, closes the database if owned. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    // queued groups may queue further groups: wait until both chains stand still
    for (;;) {
      const m = this.mutex
      const st = this.stage2
      await m.catch(() => undefined)
      await st
      if (m === this.mutex && st === this.stage2 && this.pending.length === 0) break
    }
    this.sealer.close()
    this.lock?.release()
    this.lock = null
    if (this.ownsDb) this.db.close()
  }

  // ---------------------------------------------------------------------------------
  // keys and identity

  /** The signing key id, or null for a POP store. */
  get keyId(): string | null {
    return this.signing?.keyId ?? null
  }

  /** The raw 32-byte signing public key, or null for a POP store. */
  get publicKey(): Buffer | null {
    return this.signing ? Buffer.from(this.signing.publicKey) : null
  }

  /** Trusted public keys by id (own key included). */
  get trustedKeys(): ReadonlyMap<string, TrustedKey> {
    return this.ring
  }

  /** The core's public key, to hand to a POP (`store init --pop --trust-key FILE`). */
  exportPublicKey(): { keyId: string; publicKey: Buffer } {
    if (!this.signing)
      throw claError(
        'CLA_ERR_STORE_NO_SIGNING_KEY',
        'this store has no signing key (a POP replica)',
      )
    return { keyId: this.signing.keyId, publicKey: Buffer.from(this.signing.publicKey) }
  }

  /** Adds a trusted public key (raw 32 bytes) to {data}/keys/trusted and to this instance. */
  trustKey(publicKey: Buffer): string {
    const t = trustedKeyFromRaw(publicKey)
    writeFileDurable(join(this.paths.trusted, `${t.keyId}.pub`), t.publicKey, 0o644)
    this.ring.set(t.keyId, t)
    return t.keyId
  }

  /**
   * Signs `domain + body` with the store's key (a statement, lib/store/keys.ts): for the
   * core's own records, e.g. audit anchors. The key stays inside the store.
   */
  signStatement(domain: string, body: Buffer): { keyId: string; signature: Buffer } {
    if (!this.signing)
      throw claError(
        'CLA_ERR_STORE_NO_SIGNING_KEY',
        'this store has no signing key (a POP replica); it cannot sign statements',
      )
    return { keyId: this.signing.keyId, signature: signStatement(this.signing, domain, body) }
  }

  /** True when `signature` over `domain + body` verifies with the trusted key `keyId`. */
  verifyStatement(domain: string, body: Buffer, keyId: string, signature: Buffer): boolean {
    return verifyStatement(this.ring, keyId, domain, body, signature)
  }

  /** True when files are being sealed (mode not off and the filesystem honours chattr). */
  get sealing(): boolean {
    return this.protection !== 'off' && this.probe.honoured
  }

  /**
   * Seals again what lost its flags (a repair, an intruder): `files` +i, `dirs` +a, both
   * relative to the store root. Idempotent; nothing when the store does not seal.
   */
  /**
   * Moves a damaged blob file aside to {data}/quarantine/ (unsealing it and its folder for
   * the move, then sealing the folder again) so a good copy can take its place. The index
   * row stays. Returns where the file went.
   */
  async quarantine(info: BlobInfo): Promise<string> {
    this.checkOpen()
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

  async reseal(files: readonly string[], dirs: readonly string[]): Promise<void> {
    this.checkOpen()
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

  latest(p0: string): BlobInfo | undefined {
    validateP0(p0)
    this.checkOpen()
    const r = this.stmt(
      `SELECT ${INFO_COLS} FROM blobs WHERE p0 = ? ORDER BY created_at DESC, seq DESC LIMIT 1`,
    ).get(p0) as Record<string, unknown> | undefined
    return r ? rowToInfo(r) : undefined
  }

  /** Every version of `p0`, oldest first. */
  versions(p0: string): BlobInfo[] {
    validateP0(p0)
    this.checkOpen()
    const rows = this.stmt(
      `SELECT ${INFO_COLS} FROM blobs WHERE p0 = ? ORDER BY created_at, seq`,
    ).all(p0) as Record<string, unknown>[]
    return rows.map(rowToInfo)
  }

  bySeq(seq: number): BlobInfo | undefined {
    this.checkOpen()
    const r = this.stmt(`SELECT ${INFO_COLS} FROM blobs WHERE seq = ?`).get(seq) as
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
    this.checkOpen()
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
    const decoded = verifyCla(buf, this.ring, info.path)
    checkExpect(decoded, info.path, info)
    return { buf, decoded }
  }

  /**
   * The page of blobs after `cursor` (null: from the start), in (created_at, seq) order.
   * Rows commit in that order under the writer lock, so a page never skips or repeats.
   */
  changesAfter(cursor: string | null, limit: number): ChangesPage {
    this.checkOpen()
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

  status(): StoreStatus {
    this.checkOpen()
    const r = this.stmt(
      `SELECT count(*) AS n, count(DISTINCT p0) AS p0s, coalesce(sum(size), 0) AS payload,
                coalesce(sum(file_size), 0) AS file, coalesce(sum(sealed = 0), 0) AS unsealed,
                max(seq) AS last_seq, max(created_at) AS last_at FROM blobs`,
    ).get() as Record<string, number | null>
    const reason = !this.probe.honoured ? this.probe.reason : this.sealFailure
    return {
      store_id: this.storeId,
      generation: this.generation,
      role: this.role,
      root: this.root,
      key_id: this.keyId,
      trusted_key_ids: [...this.ring.keys()].sort(),
      blobs: r.n ?? 0,
      p0s: r.p0s ?? 0,
      payload_bytes: r.payload ?? 0,
      file_bytes: r.file ?? 0,
      unsealed_rows: r.unsealed ?? 0,
      last_seq: r.last_seq ?? null,
      last_created_at: r.last_at ?? null,
      protection: {
        mode: this.protection,
        honoured: this.probe.honoured && this.sealFailure === undefined,
        sealing: this.sealing,
        ...(reason ? { reason } : {}),
      },
      writer_pid: this.lock ? process.pid : (liveLockHolder(this.paths.lock) ?? null),
    }
  }

  // ---------------------------------------------------------------------------------
  // writes

  /** Stores a new version of `p0`. Resolves once the file is durable, sealed and indexed. */
  put(p0: string, payload: Buffer): Promise<BlobInfo> {
    try {
      this.checkOpen()
      validateP0(p0)
      if (!Buffer.isBuffer(payload))
        throw claError('CLA_ERR_INVALID_INPUT', 'payload must be a Buffer')
      if (payload.length > this.maxPayloadBytes) {
        throw claError(
          'CLA_ERR_PAYLOAD_TOO_LARGE',
          `payload is ${payload.length} bytes; the limit is ${this.maxPayloadBytes}`,
          { details: { size: payload.length, limit: this.maxPayloadBytes } },
        )
      }
      if (!this.signing) {
        throw claError(
          'CLA_ERR_STORE_NO_SIGNING_KEY',
          'this store is a POP replica without a signing key; it only ingests',
        )
      }
    } catch (err) {
      return Promise.reject(err)
    }
    return new Promise<BlobInfo>((resolve, reject) => {
      this.pending.push({ p0, payload, resolve, reject })
      this.scheduleFlush()
    })
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
      this.checkOpen()
    } catch (err) {
      return Promise.reject(err)
    }
    return this.exclusive(() => this.ingestLocked(staged, opts))
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
    this.checkOpen()
    const results = await mapLimit(staged, 32, (s) =>
      this.verifyOne(s).then(
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
    this.verifiedBatches.set(verified, items)
    return { verified, bad }
  }

  private async verifyOne(s: StagedFile): Promise<VerifiedItem> {
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
    const d = await verifyClaAsync(buf, this.ring, s.file)
    const path = s.expect?.path ?? `${shardOf(d.p0)}/${d.p0}/${basename(s.file)}`
    checkExpect(d, s.file, { ...s.expect, path })
    return {
      staged: s.file,
      info: infoOf(d, path),
      bytes: buf,
      stat: { ino: st.ino, size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs },
    }
  }

  /** The items of a batch this store verified; each batch is taken once. */
  private takeVerified(v: VerifiedStaged): VerifiedItem[] {
    const items = this.verifiedBatches.get(v)
    if (!items)
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        'ingest was given a verified batch this store did not make, or one already ingested',
      )
    this.verifiedBatches.delete(v)
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

  /** Indexes every valid .cla file that has no index row (fast-glob over the tree). */
  rebuildIndex(): Promise<RebuildReport> {
    try {
      this.checkOpen()
    } catch (err) {
      return Promise.reject(err)
    }
    return this.exclusive(async () => {
      await this.stage2
      await this.ensureWriter()
      return this.rebuildLocked()
    })
  }

  /** Checks every file and row: missing, corrupt (hash/signature/header), unindexed, unsealed. */
  async verify(): Promise<VerifyReport> {
    this.checkOpen()
    const files = await this.listFiles()
    const rows = (
      this.stmt(`SELECT ${INFO_COLS} FROM blobs`).all() as Record<string, unknown>[]
    ).map(rowToInfo)
    const byPath = new Map(rows.map((r) => [r.path, r]))
    const onDisk = new Set(files)
    const missing = rows.filter((r) => !onDisk.has(r.path)).map((r) => r.path)
    const unindexed = files.filter((f) => !byPath.has(f))
    const corrupt: VerifyProblem[] = []
    await mapLimit(files, 16, async (rel) => {
      try {
        const parsed = parseBlobPath(rel)
        if (!parsed) throw claError('CLA_ERR_BAD_FORMAT', `${rel}: not a blob path`)
        const d = verifyCla(await readFile(join(this.root, rel)), this.ring, rel)
        checkExpect(d, rel, byPath.get(rel) ?? { p0: parsed.p0, created_at: parsed.createdAt })
      } catch (err) {
        corrupt.push(problemOf(rel, err))
      }
    })
    let unsealed: string[] = []
    if (this.sealing) {
      const dirs = [...new Set(files.map((f) => f.slice(0, f.lastIndexOf('/'))))]
      const targets = [...files, ...dirs, ...SHARDS]
      const attrs = await readAttrs(targets.map((t) => join(this.root, t)))
      unsealed = targets.filter(
        (t, i) => !hasFlag(attrs.get(join(this.root, t)), i < files.length ? 'i' : 'a'),
      )
    }
    corrupt.sort((a, b) => a.path.localeCompare(b.path))
    return {
      ok: missing.length + corrupt.length + unindexed.length + unsealed.length === 0,
      files: files.length,
      indexed: rows.length,
      missing: missing.sort(),
      corrupt,
      unindexed: unindexed.sort(),
      unsealed: unsealed.sort(),
      sealChecked: this.sealing,
    }
  }

  // ---------------------------------------------------------------------------------
  // internals

  private readonly stmts = new Map<string, Statement>()

  /** Statements are prepared once per store instance. */
  private stmt(sql: string): Statement {
    let st = this.stmts.get(sql)
    if (!st) {
      st = this.db.prepare(sql)
      this.stmts.set(sql, st)
    }
    return st
  }

  private checkOpen(): void {
    if (this.closed) throw claError('CLA_ERR_STORE_CLOSED', 'the store was closed')
  }

  private warnOnce(message: string): void {
    if (this.warned) return
    this.warned = true
    this.warn(message)
  }

  /** Serialises writer work (put batches, ingest, rebuild) in this process. */
  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.mutex.then(fn, fn)
    this.mutex = run.catch(() => undefined)
    return run
  }

  private scheduleFlush(): void {
    if (this.flushQueued) return
    this.flushQueued = true
    void this.exclusive(async () => {
      // Let puts issued in the same tick join this group.
      await new Promise((r) => setImmediate(r))
      this.flushQueued = false
      const batch = this.pending.splice(0, this.maxBatch)
      if (this.pending.length > 0) this.scheduleFlush()
      if (batch.length === 0) return
      let sealed: { done: Promise<BlobInfo[]> }
      try {
        sealed = await this.writeBatch(batch)
      } catch (err) {
        for (const item of batch) item.reject(err)
        return
      }
      // Not awaited here: the next group writes while this one is sealed and indexed.
      sealed.done.then(
        (infos) => batch.forEach((item, i) => item.resolve(infos[i]!)),
        (err: unknown) => batch.forEach((item) => item.reject(err)),
      )
    })
  }

  /** Takes the writer lock once; after a dead writer (or a fresh meta.db), recovers first. */
  private async ensureWriter(): Promise<void> {
    if (!this.lock) {
      this.lock = acquireWriterLock(this.paths.lock)
      await cleanStaging(this.paths.staging)
      if (this.lock.stale) this.recoverNeeded = true
    }
    if (this.recoverNeeded) {
      await this.stage2
      this.recoverNeeded = false
      try {
        await this.rebuildLocked()
        this.stage2Failure = undefined
      } catch (err) {
        this.recoverNeeded = true
        throw err
      }
    }
    const r = this.stmt('SELECT max(seq) AS s, max(created_at) AS c FROM blobs').get() as {
      s: number | null
      c: number | null
    }
    this.lastSeq = Math.max(this.lastSeq, r.s ?? 0)
    this.lastCreatedAt = Math.max(this.lastCreatedAt, r.c ?? 0)
  }

  private nextCreatedAt(): number {
    const now = Math.floor(this.clock())
    this.lastCreatedAt = now > this.lastCreatedAt ? now : this.lastCreatedAt + 1
    return this.lastCreatedAt
  }

  /**
   * Stage 1 of a group (under the in-process mutex): assign seq/created_at, sign, write and
   * fsync the temp files, link them into place, fsync the folders. Returns stage 2 (seal
   * and index), chained behind the previous group's stage 2 so rows commit in seq order.
   */
  private async writeBatch(batch: PendingPut[]): Promise<{ done: Promise<BlobInfo[]> }> {
    await this.ensureWriter()
    const key = this.signing!
    const items = batch.map((b) => {
      const seq = ++this.lastSeq
      const createdAt = this.nextCreatedAt()
      const name = blobFileName(createdAt, randomBytes(8).toString('hex'))
      const bytes = encodeCla({ p0: b.p0, createdAt, seq, payload: b.payload, key })
      const d = decodeCla(bytes) // header fields for the index row (no crypto)
      const path = `${shardOf(b.p0)}/${b.p0}/${name}`
      return { info: infoOf(d, path), bytes, tmp: join(this.paths.staging, `${name}.tmp`) }
    })
    let linked = false
    let newDirs: string[]
    try {
      // 1. temp files: written into the page cache, then fsynced in parallel
      const fds: number[] = []
      try {
        for (const it of items) {
          const fd = openSync(it.tmp, 'wx', BLOB_FILE_MODE)
          fds.push(fd)
          fchmodSync(fd, BLOB_FILE_MODE) // exact, whatever the umask (see publicDir)
          writeAllSync(fd, it.bytes)
        }
        await Promise.all(fds.map((fd) => fsyncFd(fd)))
      } finally {
        for (const fd of fds) closeSync(fd)
      }
      // 2. p0 folders, links (never overwrite), temp names removed
      newDirs = this.makeP0Dirs(items.map((it) => it.info.p0))
      linked = true
      for (const it of items) {
        linkNoClobber(it.tmp, join(this.root, it.info.path))
        unlinkSync(it.tmp)
      }
      // 3. folder fsyncs: every p0 folder touched, and shard folders that gained a p0 folder
      await this.syncDirs(
        items.map((it) => it.info.p0),
        newDirs,
      )
    } catch (err) {
      if (linked) this.recoverNeeded = true
      for (const it of items) rmSync(it.tmp, { force: true })
      throw err
    }
    // 4. seal, 5. index: in order behind earlier groups
    const infos = items.map((it) => it.info)
    const done = this.stage2.then(async () => {
      if (this.stage2Failure !== undefined) {
        throw claError(
          'CLA_ERR_INTERNAL',
          'an earlier group failed to index; the store recovers before its next write',
          {
            cause: this.stage2Failure,
          },
        )
      }
      let sealed: { sealed: boolean; error?: ClavitorError }
      try {
        sealed = await this.sealBatch(
          infos.map((i) => join(this.root, i.path)),
          newDirs,
        )
        this.insertRows(infos, sealed)
      } catch (err) {
        this.stage2Failure = err
        this.recoverNeeded = true
        throw err
      }
      if (sealed.error) throw sealed.error
      return infos
    })
    this.stage2 = done.catch(() => undefined)
    return { done }
  }

  /**
   * Renames whole staged p0 folders into the store: only a folder named after the p0 whose
   * entries are exactly the batch's regular files for that p0, under their target names,
   * when the store has no folder for that p0 yet. Returns the moved items and the new folders. Anything else
   * (or any rename error) is left for link.
   */
  private moveP0Dirs(items: Array<{ staged: string; info: BlobInfo }>): {
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
      const dest = join(this.root, shardOf(p0), p0)
      const names = new Set<string>()
      for (const it of group) {
        const name = basename(it.staged)
        if (join(it.staged, '..') !== src || name !== basename(it.info.path)) break
        names.add(name)
      }
      // only a folder named after the p0 (the store's layout), never the caller's own root
      if (names.size !== group.length || basename(src) !== p0 || src.startsWith(this.root + '/'))
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

  private makeP0Dirs(p0s: string[]): string[] {
    const created: string[] = []
    for (const p0 of new Set(p0s)) {
      const dir = join(this.root, shardOf(p0), p0)
      try {
        publicDir(dir)
        created.push(dir)
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      }
    }
    return created
  }

  private async syncDirs(p0s: string[], newDirs: string[]): Promise<void> {
    const dirs = new Set<string>()
    for (const p0 of p0s) dirs.add(join(this.root, shardOf(p0), p0))
    for (const d of newDirs) dirs.add(join(d, '..'))
    await mapLimit([...dirs], 16, fsyncDir)
  }

  /** A batch too small for ingestSyncfsMin still uses syncfs when the page cache is clean. */
  private syncfsCheap(n: number): boolean {
    if (n < SYNCFS_SMALL_MIN || this.syncfsMaxDirty <= 0) return false
    const dirty = dirtyBytes()
    return dirty !== null && dirty <= this.syncfsMaxDirty
  }

  /** Seals files (+i) and new folders (+a). Returns whether they are sealed and, in enforce mode, the error. */
  private async sealBatch(
    files: string[],
    dirs: string[],
  ): Promise<{ sealed: boolean; error?: ClavitorError }> {
    if (!this.sealing) return { sealed: false }
    try {
      // one chattr for the files (+i), one for new folders (+a), forked by the sealer shell
      await this.sealer.seal(files, dirs)
      return { sealed: true }
    } catch (err) {
      const e = isClavitorError(err)
        ? err
        : claError('CLA_ERR_SEAL_FAILED', String(err), { cause: err })
      this.sealFailure = e.message
      if (this.protection === 'enforce') return { sealed: false, error: e }
      this.warnOnce(`protection best-effort: sealing failed, files stay writable (${e.message})`)
      return { sealed: false }
    }
  }

  /** One index row (inside the caller's transaction). */
  private insertRow(i: BlobInfo, sealed: boolean): void {
    this.stmt(
      `INSERT INTO blobs (seq, created_at, p0, path, size, file_size, sha256, key_id, sealed)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
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
    )
  }

  private insertRows(
    infos: BlobInfo[],
    sealed: { sealed: boolean },
    inTx?: (db: Db) => void,
  ): void {
    this.db.transaction(() => {
      for (const i of infos) this.insertRow(i, sealed.sealed)
      inTx?.(this.db)
    })()
  }

  private async ingestLocked(
    staged: StagedFile[] | VerifiedStaged,
    opts: IngestOptions,
  ): Promise<BlobInfo[]> {
    await this.stage2
    await this.ensureWriter()
    // 1. verify everything before anything becomes visible (or take what verifyStaged did).
    //    Synchronous reads (the staged files are fresh in the page cache; a thread-pool read
    //    costs more than the read), Ed25519 on the thread pool (verifyClaAsync): a batch's
    //    signatures are checked on every core while the next files are read and parsed.
    const items: VerifiedItem[] = Array.isArray(staged)
      ? await mapLimit(staged, 32, (s) => this.verifyOne(s))
      : this.takeVerified(staged as VerifiedStaged)
    if (items.length === 0) {
      if (opts.inTransaction) this.db.transaction(() => opts.inTransaction!(this.db))()
      return []
    }
    const known = this.stmt(`SELECT ${INFO_COLS} FROM blobs WHERE path = ?`)
    const fresh = items.filter((it) => {
      const row = known.get(it.info.path) as Record<string, unknown> | undefined
      if (!row) return true
      const r = rowToInfo(row)
      if (
        r.seq !== it.info.seq ||
        r.sha256 !== it.info.sha256 ||
        r.created_at !== it.info.created_at
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
    const useSyncfs = items.length >= this.syncfsMin || this.syncfsCheap(items.length)
    if (useSyncfs) {
      const rootDev = statSync(this.root).dev
      const devOf = new Map<string, number>()
      const onRootFs = items.some((it) => {
        const dir = join(it.staged, '..')
        let dev = devOf.get(dir)
        if (dev === undefined) devOf.set(dir, (dev = statSync(dir).dev))
        return dev === rootDev
      })
      if (onRootFs) await this.sealer.syncfs([this.root])
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
    this.recoverNeeded = true // until the rows commit
    //    A staged p0 folder that holds exactly this batch's files for a p0 the store does not
    //    have yet is renamed into its shard folder whole (no mkdir, no link: a mkdir costs
    //    ~0.25 ms of kernel CPU on ext4); every other file is linked into place.
    const moved = this.moveP0Dirs(items)
    const toLink = items.filter((it) => !moved.files.has(it))
    const made = this.makeP0Dirs(toLink.map((it) => it.info.p0))
    const newDirs = [...moved.dirs, ...made]
    // A folder made just now for this batch (under the writer lock) holds nothing to clobber:
    // its files are renamed in (one syscall, and no second name a crash could leave in
    // staging); anywhere else a file is linked (never overwrites) and its staged name unlinked.
    const renameInto = new Set(made)
    const renamed = new Set<string>()
    await mapLimit(toLink, 16, async (it) => {
      const dest = join(this.root, it.info.path)
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
          const tmp = join(this.paths.staging, `${basename(dest)}.ingest`)
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
    if (useSyncfs) await this.sealer.syncfs([this.root])
    else
      await this.syncDirs(
        items.map((it) => it.info.p0),
        newDirs,
      )
    // 5. seal, 6. index + inTransaction (the POP's cursor) in one transaction
    const sealed = await this.sealBatch(
      items.map((it) => join(this.root, it.info.path)),
      newDirs,
    )
    if (sealed.error) throw sealed.error
    try {
      this.insertRows(
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
    this.recoverNeeded = false
    for (const it of fresh) {
      this.lastSeq = Math.max(this.lastSeq, it.info.seq)
      this.lastCreatedAt = Math.max(this.lastCreatedAt, it.info.created_at)
    }
    return items.map((it) => it.info)
  }

  private async listFiles(): Promise<string[]> {
    return fg('*/*/*.cla', {
      cwd: this.root,
      onlyFiles: true,
      dot: false,
      followSymbolicLinks: false,
    })
  }

  private async rebuildLocked(): Promise<RebuildReport> {
    const files = await this.listFiles()
    const indexed = new Set(
      (this.stmt('SELECT path FROM blobs').all() as Array<{ path: string }>).map((r) => r.path),
    )
    const todo = files.filter((f) => !indexed.has(f))
    const corrupt: VerifyProblem[] = []
    const found: BlobInfo[] = []
    await mapLimit(todo, 16, async (rel) => {
      try {
        const parsed = parseBlobPath(rel)
        if (!parsed) throw claError('CLA_ERR_BAD_FORMAT', `${rel}: not a blob path`)
        const d = verifyCla(await readFile(join(this.root, rel)), this.ring, rel)
        checkExpect(d, rel, { p0: parsed.p0, created_at: parsed.createdAt })
        found.push(infoOf(d, rel))
      } catch (err) {
        corrupt.push(problemOf(rel, err))
      }
    })
    found.sort((a, b) => a.created_at - b.created_at || a.seq - b.seq)
    const dirs = [...new Set(found.map((f) => join(this.root, shardOf(f.p0), f.p0)))]
    const sealed = await this.sealBatch(
      found.map((f) => join(this.root, f.path)),
      dirs,
    )
    const conflicts: string[] = []
    let n = 0
    this.db.transaction(() => {
      for (const i of found) {
        try {
          this.insertRow(i, sealed.sealed)
          n++
          this.lastSeq = Math.max(this.lastSeq, i.seq)
          this.lastCreatedAt = Math.max(this.lastCreatedAt, i.created_at)
        } catch (err) {
          if ((err as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT'))
            conflicts.push(i.path)
          else throw err
        }
      }
    })()
    corrupt.sort((a, b) => a.path.localeCompare(b.path))
    return {
      scanned: files.length,
      alreadyIndexed: files.length - todo.length,
      indexed: n,
      corrupt,
      conflicts,
    }
  }
}

/** An empty data folder would silently mean the working directory. */
function checkDataDir(dataDir: unknown): void {
  if (typeof dataDir !== 'string' || dataDir.trim() === '')
    throw claError('CLA_ERR_INVALID_OPTION', 'a data folder is required (--data)', {
      details: { field: 'dataDir' },
    })
}

/** Below this many files an fsync each is cheaper than two `sync -f` forks anyway. */
const SYNCFS_SMALL_MIN = 16

/** Empties the staging folder (temp files of a dead writer, a stuck seal probe). */
export async function cleanStaging(dir: string): Promise<number> {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return 0
  }
  let removed = 0
  for (const n of names) {
    const p = join(dir, n)
    // another process's seal probe may be in flight: leave fresh ones alone
    if (n.startsWith('.seal-probe-')) {
      try {
        if (Date.now() - statSync(p).mtimeMs < 60_000) continue
      } catch {
        continue
      }
    }
    removed++
    try {
      rmSync(p, { recursive: true, force: true })
    } catch {
      await unsealTree(p)
      rmSync(p, { recursive: true, force: true })
    }
  }
  return removed
}
