// What one BlobStore's parts (writer.ts, ingest.ts, rebuild.ts, batch.ts) share, passed
// explicitly to each of them by the BlobStore facade (store.ts): the opened store (paths,
// database, keys, sealing probe, options with their defaults filled in) and the writer's
// state (lock, last seq and created_at, the in-process mutex, the put groups' stage-2
// chain). Built once by the constructor; no decisions here beyond the small helpers every
// part needs (prepared statements, the open check, the one-time warning, the mutex).
import { micros } from '../clock.js'
import type { Statement } from 'better-sqlite3'
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import type { BlobInfo } from './blob-index.js'
import type { SigningKey, TrustedKey } from './keys.js'
import type { WriterLock } from './lock.js'
import type { Identity, OpenedStore, Protection, StorePaths } from './open.js'
import { PublishSignal, publishHintPath } from './publish-signal.js'
import { Sealer, type ProbeResult } from './seal.js'

/** One put() waiting for its group (writer.ts). */
export interface PendingPut {
  p0: string
  payload: Buffer
  /** The caller's rows, committed with the blob's (PutOptions.inTransaction). */
  inTransaction?: ((info: BlobInfo, db: Db) => void) | undefined
  resolve: (info: BlobInfo) => void
  reject: (err: unknown) => void
}

export interface StoreContext {
  readonly dataDir: string
  readonly root: string
  readonly paths: StorePaths
  readonly db: Db
  readonly ownsDb: boolean
  readonly protection: Protection
  readonly identity: Identity
  readonly signing: SigningKey | undefined
  readonly ring: Map<string, TrustedKey>
  readonly probe: ProbeResult
  /** µs clock for created_at. */
  readonly clock: () => number
  readonly warn: (message: string) => void
  readonly maxPayloadBytes: number
  readonly maxBatch: number
  readonly sealer: Sealer
  /** ingest batches this large are made durable with two syncfs(2), not 2×N fsyncs. */
  readonly syncfsMin: number
  readonly syncfsMaxDirty: number
  /** Statements are prepared once per store instance (stmt()). */
  readonly stmts: Map<string, Statement>
  /** Raised after each commit that published rows (lib/store/publish-signal.ts). */
  readonly published: PublishSignal

  // the writer's state, changed by the parts
  closed: boolean
  warned: boolean
  sealFailure: string | undefined
  lock: WriterLock | null
  recoverNeeded: boolean
  /**
   * The index was adopted by a fresh meta.db (open.ts): its first rebuild publishes the files
   * it finds (nothing else says which were acknowledged). Any other recovery on a core store
   * indexes found files unpublished: no put acknowledged them (rebuild.ts).
   */
  adopted: boolean
  /** ms epoch of the last write refused for want of space (lib/db/storage-health.ts). */
  lastFullAt: number | null
  lastSeq: number
  lastCreatedAt: number
  mutex: Promise<unknown>
  /** Seal-and-index stage of put groups, chained so rows commit in seq order. */
  stage2: Promise<unknown>
  stage2Failure: unknown
  pending: PendingPut[]
  flushQueued: boolean
}

/** The context of a store just opened (lib/store/open.ts made the parts). */
export function makeContext(args: OpenedStore): StoreContext {
  const { opts } = args
  return {
    dataDir: opts.dataDir,
    root: args.paths.root,
    paths: args.paths,
    db: args.db,
    ownsDb: args.ownsDb,
    protection: args.protection,
    identity: args.identity,
    signing: args.signing,
    ring: args.ring,
    probe: args.probe,
    clock: () => micros(opts.clock),
    warn: opts.onWarning ?? ((m) => process.emitWarning(m, { code: 'CLAVITOR_PROTECTION' })),
    maxPayloadBytes: opts.maxPayloadBytes ?? 1024 * 1024,
    maxBatch: opts.maxBatch ?? 512,
    sealer: new Sealer(),
    syncfsMin: opts.ingestSyncfsMin ?? (process.platform === 'linux' ? 200 : Infinity),
    syncfsMaxDirty:
      opts.ingestSyncfsMaxDirty ?? (process.platform === 'linux' ? 32 * 1024 * 1024 : 0),
    stmts: new Map(),
    published: new PublishSignal({
      // only a core's rows are fed to POPs: a POP store keeps its signal in-process
      hintFile: args.identity.role === 'core' ? publishHintPath(opts.dataDir) : null,
      warn: opts.onWarning ?? ((m) => process.emitWarning(m, { code: 'CLAVITOR_PUBLISH' })),
    }),
    closed: false,
    warned: false,
    sealFailure: undefined,
    lock: null,
    recoverNeeded: args.recoverNeeded,
    adopted: args.recoverNeeded,
    lastFullAt: null,
    lastSeq: 0,
    lastCreatedAt: 0,
    mutex: Promise.resolve(),
    stage2: Promise.resolve(),
    stage2Failure: undefined,
    pending: [],
    flushQueued: false,
  }
}

/** True when files are being sealed (mode not off and the filesystem honours chattr). */
export function isSealing(ctx: StoreContext): boolean {
  return ctx.protection !== 'off' && ctx.probe.honoured
}

/** Statements are prepared once per store instance. */
export function stmt(ctx: StoreContext, sql: string): Statement {
  let st = ctx.stmts.get(sql)
  if (!st) {
    st = ctx.db.prepare(sql)
    ctx.stmts.set(sql, st)
  }
  return st
}

export function checkOpen(ctx: StoreContext): void {
  if (ctx.closed) throw claError('CLA_ERR_STORE_CLOSED', 'the store was closed')
}

export function warnOnce(ctx: StoreContext, message: string): void {
  if (ctx.warned) return
  ctx.warned = true
  ctx.warn(message)
}

/** Serialises writer work (put batches, ingest, rebuild) in this process. */
export function exclusive<T>(ctx: StoreContext, fn: () => Promise<T>): Promise<T> {
  const run = ctx.mutex.then(fn, fn)
  ctx.mutex = run.catch(() => undefined)
  return run
}
