// Creating and opening a store: its paths ({data}/store, staging, keys, store.json), the
// modes of its folders and blobs, the options a BlobStore takes, and what opening reads
// and checks: the identity file, the signing key and the trusted key ring, the sealing
// probe, and the meta rows of {data}/meta.db (adopted by a fresh database, refused when
// they name another store). The BlobStore facade (store.ts) builds itself from openStore().
import { randomBytes } from 'node:crypto'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Clock } from '../clock.js'
import { dataLayout, ensureDataDir } from '../db/data-dir.js'
import { getMeta, setMeta } from '../db/meta.js'
import { openDb, type Db } from '../db/open.js'
import { claError } from '../errors.js'
import { fsyncDirSync, writeFileDurable } from './durable.js'
import {
  generateSigningKey,
  makeKeyRing,
  parsePublicKeyFile,
  signingKeyFromSeed,
  trustedKeyFromRaw,
  type SigningKey,
  type TrustedKey,
} from './keys.js'
import { liveLockHolder } from './lock.js'
import { probeSealing, sealDirs, type ProbeResult } from './seal.js'
import { cleanStaging } from './staging.js'

/**
 * How the store seals its files with chattr (docs/store.md, "Protection modes"): 'enforce'
 * refuses to open where sealing does not work (CLA_ERR_SEAL_UNSUPPORTED), 'best-effort'
 * seals when it can and warns once otherwise, 'off' never seals.
 */
export type Protection = 'enforce' | 'best-effort' | 'off'
/** Every {@link Protection} mode, for option validation. */
export const PROTECTIONS: readonly Protection[] = ['enforce', 'best-effort', 'off']
/**
 * 'core': the store that signs and puts blobs. 'pop': a replica with no signing key that only
 * ingests files the core signed.
 */
export type StoreRole = 'core' | 'pop'

/** Options of BlobStore.open (and init, through {@link InitOptions}). */
export interface StoreOptions {
  /** The data folder ({data}/store, {data}/staging, {data}/keys, {data}/meta.db). */
  dataDir: string
  /** Use this open database instead of opening {data}/meta.db (not closed by close()). */
  db?: Db
  /** Default 'best-effort'. */
  protection?: Protection
  /** Extra trusted public keys (raw 32 bytes) on top of {data}/keys/trusted/*.pub and the own key. */
  trustedKeys?: Buffer[]
  /** The clock (lib/clock.ts) created_at is read from (µs); default the system's. */
  clock?: Clock
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

/** Options of BlobStore.init: those of open, plus what a new store is made with. */
export interface InitOptions extends StoreOptions {
  /** 'core' (default) makes a signing key; 'pop' makes none and needs trustKeys. */
  role?: StoreRole
  /** Public keys (raw 32 bytes) to write into {data}/keys/trusted/. */
  trustKeys?: Buffer[]
  /** Fixed signing seed (raw 32 bytes), for test vectors; default random. */
  seed?: Buffer
}

/** The identity file {data}/store.json. */
export interface Identity {
  format: 1
  store_id: string
  generation: number
  role: StoreRole
  created_at: number
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

export type StorePaths = ReturnType<typeof storePaths>

/**
 * The store's folders are 0755 and its blobs 0444, set explicitly: the rsync daemon reads
 * them as `nobody` inside a chroot of the store root, and the services run with
 * `UMask=0077`, which would make them 0700/0400 (lib/db/data-dir.ts says why {data}
 * above them is 0700 all the same).
 */
export const STORE_DIR_MODE = 0o755
export const BLOB_FILE_MODE = 0o444

/** mkdir, then the exact mode (mkdir's own is masked by the umask). EEXIST is thrown. */
export function publicDir(dir: string): void {
  mkdirSync(dir)
  chmodSync(dir, STORE_DIR_MODE)
}

export const SHARDS = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

export function checkProtection(p: unknown): Protection {
  if (p === undefined) return 'best-effort'
  if (typeof p === 'string' && (PROTECTIONS as readonly string[]).includes(p))
    return p as Protection
  throw claError(
    'CLA_ERR_INVALID_OPTION',
    `protection must be one of ${PROTECTIONS.join(', ')}; got ${String(p)}`,
  )
}

/** An empty data folder would silently mean the working directory. */
export function checkDataDir(dataDir: unknown): void {
  if (typeof dataDir !== 'string' || dataDir.trim() === '')
    throw claError('CLA_ERR_INVALID_OPTION', 'a data folder is required (--data)', {
      details: { field: 'dataDir' },
    })
}

/** True when {data} holds an initialised store. */
export function isInitialized(dataDir: string): boolean {
  return existsSync(storePaths(dataDir).identity)
}

/**
 * BlobStore.init without the open at the end: makes {data}/store/00..ff, {data}/staging,
 * {data}/keys (a signing key for role 'core'), the identity file {data}/store.json and the
 * meta rows. Idempotent: an existing store only gets the `trustKeys` added.
 */
export async function initStore(opts: InitOptions): Promise<void> {
  checkDataDir(opts.dataDir)
  const protection = checkProtection(opts.protection)
  const role = opts.role ?? 'core'
  if (role !== 'core' && role !== 'pop')
    throw claError('CLA_ERR_INVALID_OPTION', `role must be core or pop; got ${String(role)}`)
  const p = storePaths(opts.dataDir)
  for (const k of opts.trustKeys ?? []) trustedKeyFromRaw(k) // validate before writing anything
  if (role === 'pop' && !isInitialized(opts.dataDir) && (opts.trustKeys ?? []).length === 0) {
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
  if (isInitialized(opts.dataDir)) return
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
    writeIdentityMeta(db, identity)
  } finally {
    if (!opts.db) db.close()
  }
  // Written last: a half-made store is "not initialised" and init simply runs again.
  writeFileDurable(p.identity, JSON.stringify(identity, null, 2) + '\n', 0o644)
}

function writeIdentityMeta(db: Db, identity: Identity): void {
  db.transaction(() => {
    setMeta(db, 'store_id', identity.store_id)
    setMeta(db, 'store_generation', String(identity.generation))
    setMeta(db, 'store_role', identity.role)
  })()
}

/** What opening a store found: everything lib/store/context.ts needs to build a store. */
export interface OpenedStore {
  opts: StoreOptions
  paths: StorePaths
  identity: Identity
  db: Db
  ownsDb: boolean
  signing: SigningKey | undefined
  ring: Map<string, TrustedKey>
  probe: ProbeResult
  protection: Protection
  recoverNeeded: boolean
}

/** The own key (if any), {data}/keys/trusted/*.pub and the extra `trustedKeys`, by key id. */
function loadKeys(
  p: StorePaths,
  extra: Buffer[],
): { signing: SigningKey | undefined; ring: Map<string, TrustedKey> } {
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
  for (const k of extra) {
    const t = trustedKeyFromRaw(k)
    ring.set(t.keyId, t)
  }
  return { signing, ring }
}

/**
 * BlobStore.open's work: checks the store is initialised (CLA_ERR_STORE_NOT_INITIALIZED
 * otherwise), reads the identity and the keys, cleans the staging folder when no live
 * writer holds the lock, probes once whether the filesystem honours chattr, and checks
 * (or adopts) the meta rows. The writer lock itself is taken at the first write.
 */
export async function openStore(opts: StoreOptions): Promise<OpenedStore> {
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
  const { signing, ring } = loadKeys(p, opts.trustedKeys ?? [])
  mkdirSync(p.staging, { recursive: true })
  const holder = liveLockHolder(p.lock)
  if (holder === undefined) await cleanStaging(p.staging)
  const probe: ProbeResult = await probeSealing(p.staging, p.root)
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
      writeIdentityMeta(db, identity)
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
  return { opts, paths: p, identity, db, ownsDb, signing, ring, probe, protection, recoverNeeded }
}

/**
 * Writes {data}/store.json from the identity meta.db holds (store_id, generation, role):
 * a core restored from a replica of meta.db lost the file with its disk. With
 * `bumpGeneration` the generation goes up by one, in both places: the restored store went
 * back in time (blobs its POPs may hold are gone), so every POP re-baselines instead of
 * trusting its cursor (lib/pop-sync/pop-cursor.ts). CLA_ERR_EXISTS when the file exists;
 * CLA_ERR_STORE_NOT_INITIALIZED when meta.db holds no store identity.
 */
export function restoreIdentityFile(
  dataDir: string,
  db: Db,
  opts: { bumpGeneration?: boolean } = {},
): Identity {
  const p = storePaths(dataDir)
  if (existsSync(p.identity))
    throw claError('CLA_ERR_EXISTS', `${p.identity} exists; a restore never overwrites it`)
  const storeId = getMeta(db, 'store_id')
  const generation = Number(getMeta(db, 'store_generation') ?? 'NaN')
  const role = getMeta(db, 'store_role') as StoreRole | null
  if (!storeId || !Number.isSafeInteger(generation) || (role !== 'core' && role !== 'pop'))
    throw claError(
      'CLA_ERR_STORE_NOT_INITIALIZED',
      `${p.db} holds no store identity (store_id, store_generation, store_role)`,
    )
  const identity: Identity = {
    format: 1,
    store_id: storeId,
    generation: opts.bumpGeneration ? generation + 1 : generation,
    role,
    created_at: Date.now() * 1000,
  }
  writeIdentityMeta(db, identity)
  writeFileDurable(p.identity, JSON.stringify(identity, null, 2) + '\n', 0o644)
  return identity
}
