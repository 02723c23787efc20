// One pull: feed page → its checkpoint verified (the core's signature, and the replication
// log's chain recomputed over the page's items from this POP's last verified position must
// reach it) → bounded NUL list → `rsync --files-from` into a plain staging folder →
// store.ingest (each file's whole sha256 against the authenticated entry, header against the
// feed; link, seal, index) with the cursor and its chain value advanced in the same SQLite
// transaction → next page, until caught up. The cursor never passes a blob that is not
// sealed here: on any failure the run stops with the cursor at the last blob sealed, and the
// next run resumes from there. A page that does not match its checkpoint is refused whole.
import { existsSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { AuditEventInput } from '../audit/log.js'
import type { Db } from '../db/open.js'
import { nowMicros } from '../db/open.js'
import { claError, isClavitorError, type ClavitorError } from '../errors.js'
import { compareCursor, decodeCursor, encodeCursor, type CursorPos } from '../store/cursor.js'
import { blobIndex, type BlobIndex } from '../store/blob-index.js'
import { removeStagingTree } from '../store/seal.js'
import type { VerifiedStaged, VerifyStagedResult } from '../store/store.js'
import { FEED_MAX_LIMIT, type FeedItem, type FeedPage } from '../core-sync/feed.js'
import { bootstrap, type BootstrapResult, type BootstrapStore } from './bootstrap.js'
import { CHAIN_GENESIS, chainNext } from '../store/chain.js'
import { verifyCheckpoint, type Checkpoint } from '../store/checkpoint.js'
import type { KeyRing } from '../store/keys.js'
import { runRsync } from './rsync.js'
import { identityCheck, PopCursor } from './pop-cursor.js'
import { AHEAD, PageQueue, type Staged } from './pull-queue.js'
import { diskFull, isDiskFull, isHostFault, refusedError } from './pull-faults.js'
import type { FeedClient } from './transport.js'

/** What ingest checks each staged file against (the feed's claim). */
export interface IngestExpect {
  path: string
  p0: string
  size: number
  file_size: number
  sha256: string
  created_at: number
  seq: number
  /** The whole file's sha256, authenticated by the page's checkpoint. */
  file_sha256: string
}

/**
 * The part of the POP's BlobStore a pull needs (lib/store BlobStore satisfies it);
 * `verifyTree` and `ingestTree` (a bootstrap's bulk fill) are optional.
 */
export interface PullStore {
  /** BlobStore.verifyTree, for a bootstrap (optional: without it a pull pages from the start). */
  verifyTree?: BootstrapStore['verifyTree']
  /** BlobStore.ingestTree, for a bootstrap (optional, with verifyTree). */
  ingestTree?: BootstrapStore['ingestTree']
  /** The store root (to re-seal a store file whose second name a crash left in staging). */
  readonly root: string
  /** The core's public keys: the checkpoints must be signed by one of them. */
  readonly trustedKeys: KeyRing
  /** Reads and verifies staged files ahead of ingest (BlobStore.verifyStaged). */
  verifyStaged(
    staged: Array<{ file: string; expect?: IngestExpect; verify?: 'file-sha256' }>,
  ): Promise<VerifyStagedResult>
  /**
   * Ingests staged files (BlobStore.ingest), running `inTransaction` in the transaction that
   * indexes them.
   */
  ingest(
    staged: Array<{ file: string; expect?: IngestExpect; verify?: 'file-sha256' }> | VerifiedStaged,
    opts?: { inTransaction?: (db: Db) => void },
  ): Promise<unknown[]>
}

/** How a POP runs rsync against the core (the same settings serve the pull and repairs). */
export interface RsyncSettings {
  /** `rsync://host:port/module/`, `user@host:/path/`, or a local folder. */
  source: string
  /** rsync --timeout / --contimeout, seconds. Default 30. */
  ioTimeoutSec?: number
  /** Extra rsync arguments (e.g. `--password-file`). */
  extraArgs?: readonly string[]
  /** Environment of the rsync process (e.g. RSYNC_PASSWORD). */
  env?: Record<string, string>
  /** rsync binary. Default 'rsync'. */
  rsyncPath?: string
}

/** Progress of a pull, given after each page. */
export interface PullProgress {
  /** Blobs sealed in this run so far. */
  sealed: number
  /** Listed blobs this POP already held (not fetched again). */
  already: number
  /** Items in the page just done. */
  page: number
  /** Blobs the core still lists after this POP's cursor. */
  remaining: number
  /** The POP's cursor after the page. */
  cursor: string | null
  /** The core's newest published blob as of the page. */
  head: CursorPos | null
}

/** Options of one pull (pullOnce). */
export interface PullOptions {
  /** POP id (audit actor). */
  popId: string
  /** The POP's metadata database (its store's index lives in it). */
  db: Db
  /** The POP's store (or any object with the same ingest calls). */
  store: PullStore
  /** The core's feed. */
  feed: FeedClient
  /** How to fetch blobs from the core. */
  rsync: RsyncSettings
  /** Plain folder on the store's filesystem, never sealed. */
  stagingDir: string
  /** Feed page size (the rsync list bound). Default 1000. */
  pageSize?: number
  /** Stops the pull with CLA_ERR_SYNC_ABORTED; the cursor stays at the last blob sealed. */
  signal?: AbortSignal
  /** Called after each page is sealed or found held. */
  onProgress?: (p: PullProgress) => void
  /** Audit sink for alarms (appendEvent on the POP's db by default in lib/pop.ts). */
  audit?: (ev: AuditEventInput) => void
  /** Loud log line for alarms (pino in the agent). */
  warn?: (msg: string, data?: Record<string, unknown>) => void
  /**
   * An empty POP facing at least this many blobs fills by bootstrap (lib/pop-sync/bootstrap.ts:
   * whole-tree rsync, bulk verification against the log, bulk seal and index) before paging.
   * Default 5000; 0 = never. Needs a store with verifyTree and ingestTree.
   */
  bootstrapMin?: number
  /** Told what a bootstrap did (its steps' times), when one ran. */
  onBootstrap?: (r: BootstrapResult) => void
}

/** What one pull did. */
export interface PullResult {
  /** Blobs fetched, verified and sealed. */
  sealed: number
  /** Listed blobs this POP already held. */
  already: number
  /** Feed pages read. */
  pages: number
  /** The POP's cursor at the end. */
  cursor: string | null
  /** The core's newest published blob as of the last page; null when no page was read. */
  head: CursorPos | null
  /** Core newest created_at minus this POP's cursor (0 when caught up; null while this POP holds nothing of a core that holds blobs). */
  lag_us: number | null
  /** Identity alarms raised in this run (store mismatch, cursor ahead); the run carried on from a re-baseline. */
  alarms: ClavitorError[]
}

function checkAbort(signal: AbortSignal | undefined): void {
  if (signal?.aborted)
    throw claError(
      'CLA_ERR_SYNC_ABORTED',
      'pull stopped by shutdown; the next run resumes from the cursor',
    )
}

/**
 * rsync one page's missing blobs into runDir. Returns null, or the error that stopped part
 * of the transfer (the caller ingests what arrived, in order, up to the first gap). Only
 * files rsync completed (renamed into place) exist under runDir, and each still goes
 * through ingest's full verification.
 */
async function fetchPage(
  o: PullOptions,
  toFetch: FeedItem[],
  listFile: string,
  runDir: string,
): Promise<ClavitorError | null> {
  try {
    const r = await runRsync(
      {
        ...o.rsync, // source, timeout, rsync binary, extra args, env: as configured
        files: toFetch.map((i) => i.path),
        listFile,
        dest: runDir,
        flat: true,
        signal: o.signal,
      },
      { partial: true },
    )
    if (r.exitCode === 0) return null
    return claError(
      'CLA_ERR_SYNC_PARTIAL',
      `rsync exit ${r.exitCode}: some listed files did not arrive: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`,
      { details: { rsync_exit: r.exitCode, reason: r.exitCode === 24 ? 'vanished' : 'partial' } },
    )
  } catch (err) {
    if (
      !isClavitorError(err) ||
      err.code === 'CLA_ERR_SYNC_ABORTED' ||
      err.code === 'CLA_ERR_SYNC_DISK_FULL'
    )
      throw err
    return err
  }
}

/** What the steps of one pull share. */
interface PullRun {
  o: PullOptions
  cursor: PopCursor
  pageSize: number
  index: BlobIndex
  /** An identity alarm re-baselined this run: the pages after it are not checked again. */
  rebaselined: boolean
}

/** The page's checkpoint checked and the chain recomputed over its items (see the file comment). */
function checkChain(
  run: PullRun,
  page: FeedPage,
  reqPos: CursorPos | null,
  startChain: string,
): { chains: Map<string, string>; endChain: string; checkpoint: Checkpoint } {
  const { o } = run
  let cp: Checkpoint
  try {
    cp = verifyCheckpoint(o.store.trustedKeys, page.checkpoint)
    if (cp.store_id !== page.store_id || cp.generation !== page.generation) {
      throw claError(
        'CLA_ERR_SYNC_CHECKPOINT',
        `the checkpoint names store ${cp.store_id} generation ${cp.generation}, the page ${page.store_id} generation ${page.generation}`,
      )
    }
  } catch (err) {
    throw chainAlarm(o, err as ClavitorError)
  }
  const chains = new Map<string, string>()
  let c = startChain
  for (const it of page.items) {
    c = chainNext(c, it)
    chains.set(it.path, c)
  }
  const last = page.items[page.items.length - 1]
  const at = last ?? reqPos ?? { created_at: 0, seq: 0 }
  if (cp.seq !== at.seq || cp.created_at !== at.created_at || cp.chain !== c) {
    throw chainAlarm(
      o,
      claError(
        'CLA_ERR_SYNC_CHAIN',
        `the core's feed after ${reqPos ? encodeCursor(reqPos) : 'the start'} does not match its signed checkpoint (seq ${cp.seq}): an entry skipped, reordered, inserted or altered, or a forked core; nothing of the page is sealed`,
        {
          details: {
            cursor: reqPos ? encodeCursor(reqPos) : null,
            checkpoint_seq: cp.seq,
            checkpoint_chain: cp.chain,
            computed_seq: at.seq,
            computed_chain: c,
          },
        },
      ),
    )
  }
  return { chains, endChain: c, checkpoint: cp }
}

/** Audits and logs a refused page (sync.alarm); returns the error to throw. */
function chainAlarm(o: PullOptions, err: ClavitorError): ClavitorError {
  o.warn?.(err.message, { code: err.code, ...err.details })
  o.audit?.({
    kind: 'sync.alarm',
    actor: o.popId,
    outcome: 'alarm',
    reason: err.code,
    data: { message: err.message, ...err.details },
  })
  return err
}

type Producer = { queue: PageQueue; stop: () => Promise<void> }

/**
 * One pull, in named steps: clear what a crash left in staging; stage pages ahead
 * (stagePage, run by startProducer); for each page in order, re-baseline on an identity
 * alarm (rebaseline), else seal and index it with the cursor (sealPage); report the lag.
 */
export async function pullOnce(o: PullOptions): Promise<PullResult> {
  const run: PullRun = {
    o,
    cursor: new PopCursor(o.db),
    pageSize: o.pageSize ?? 1000,
    index: blobIndex(o.db),
    rebaselined: false,
  }
  const res: PullResult = {
    sealed: 0,
    already: 0,
    pages: 0,
    cursor: run.cursor.token(),
    head: null,
    lag_us: 0,
    alarms: [],
  }
  // A crash between link and unlink can leave a staged name of a (since sealed) store file.
  await removeStagingTree(o.stagingDir, o.store.root)
  await mkdir(o.stagingDir, { recursive: true })

  await maybeBootstrap(run, res)
  let producer = startProducer(run, run.cursor.token(), startChainOf(run))
  try {
    for (;;) {
      checkAbort(o.signal)
      const st = await producer.queue.shift()
      if (!st) break
      res.pages++
      res.head = st.page.head
      if (st.alarm) {
        rebaseline(run, st, res)
        await producer.stop()
        producer = startProducer(run, null, CHAIN_GENESIS)
        continue
      }
      await sealPage(run, st, res)
      if (!st.page.more || st.items.length === 0) break
    }
  } finally {
    await producer.stop()
  }
  res.cursor = run.cursor.token()
  const pos = decodeCursor(res.cursor)
  // unknown (null) while this POP holds nothing of a core that holds blobs: not "since 1970"
  res.lag_us = res.head ? (pos ? Math.max(0, res.head.created_at - pos.created_at) : null) : 0
  return res
}

/**
 * Feed page after `reqTok`, identity check, held/fetch split, rsync of what is missing
 * into the slot's folder, then verification of what arrived started (not awaited). Pure
 * preparation: nothing becomes visible here, so later pages are staged while an earlier
 * one is being sealed and indexed.
 */
async function stagePage(
  run: PullRun,
  reqTok: string | null,
  startChain: string,
  slot: number,
  signal: AbortSignal,
): Promise<Staged> {
  const { o } = run
  const runDir = join(o.stagingDir, `run-${slot}`)
  const page = await o.feed.page(reqTok, run.pageSize)
  const alarm = run.rebaselined ? null : identityCheck(page, run.cursor)
  if (alarm)
    return {
      page,
      alarm,
      items: [],
      held: new Set(),
      runDir,
      fetchError: null,
      prefix: [],
      missing: undefined,
      verification: null,
      chains: new Map(),
      endChain: startChain,
      checkpoint: null,
    }
  const reqPos = decodeCursor(reqTok)
  const items = page.items
  const toFetch: FeedItem[] = []
  const held = new Set<string>()
  for (const it of items) {
    if (reqPos && compareCursor(it, reqPos) <= 0) {
      throw claError(
        'CLA_ERR_SYNC_FEED',
        `the core listed ${it.path} at or before the cursor ${reqTok}`,
      )
    }
  }
  const { chains, endChain, checkpoint } = checkChain(run, page, reqPos, startChain)
  for (const it of items) {
    const h = run.index.byPath(it.path) ?? run.index.bySeq(it.seq)
    if (h) {
      if (
        h.path !== it.path ||
        h.seq !== it.seq ||
        h.sha256 !== it.sha256 ||
        h.created_at !== it.created_at ||
        h.size !== it.size ||
        (h.file_sha256 !== null && h.file_sha256 !== it.file_sha256)
      ) {
        const err = claError(
          'CLA_ERR_SYNC_CONFLICT',
          `the core lists ${it.path} (seq ${it.seq}) but this POP holds ${h.path} (seq ${h.seq}) with other content; re-seed this POP from an empty data folder`,
          { details: { core: it, pop: h } },
        )
        o.audit?.({
          kind: 'sync.alarm',
          actor: o.popId,
          outcome: 'alarm',
          reason: err.code,
          data: { message: err.message, path: it.path },
        })
        throw err
      }
      held.add(it.path)
    } else {
      toFetch.push(it)
    }
  }
  let fetchError: ClavitorError | null = null
  await rm(runDir, { recursive: true, force: true })
  if (toFetch.length > 0) {
    await mkdir(runDir, { recursive: true })
    fetchError = await fetchPage(
      { ...o, signal },
      toFetch,
      join(o.stagingDir, `files-from-${slot}.list`),
      runDir,
    )
  }
  const prefix: FeedItem[] = []
  let missing: FeedItem | undefined
  for (const it of items) {
    if (held.has(it.path) || existsSync(stagedPath(runDir, it))) prefix.push(it)
    else {
      missing = it
      break
    }
  }
  const staged = prefix.filter((it) => !held.has(it.path))
  const verification =
    staged.length > 0
      ? o.store.verifyStaged(
          staged.map((it) => ({
            file: stagedPath(runDir, it),
            expect: expectOf(it),
            verify: 'file-sha256' as const, // the entry is authenticated by the checkpoint
          })),
        )
      : null
  verification?.catch(() => undefined) // awaited by the consumer; never unhandled
  return {
    page,
    alarm: null,
    items,
    held,
    runDir,
    fetchError,
    prefix,
    missing,
    verification,
    chains,
    endChain,
    checkpoint,
  }
}

/**
 * An empty POP (no cursor, no blob) facing a large feed fills by bootstrap first; the
 * page-by-page pull then goes on from where it left the cursor.
 */
async function maybeBootstrap(run: PullRun, res: PullResult): Promise<void> {
  const { o } = run
  const min = o.bootstrapMin ?? 5000
  const store = o.store as PullStore & Partial<BootstrapStore>
  if (min <= 0 || !store.verifyTree || !store.ingestTree) return
  if (run.cursor.token() !== null || run.index.count() > 0) return
  const first = await o.feed.page(null, FEED_MAX_LIMIT)
  if (first.remaining < min || identityCheck(first, run.cursor)) return
  const b = await bootstrap(
    {
      store: store as BootstrapStore,
      feed: o.feed,
      rsync: o.rsync,
      stagingDir: o.stagingDir,
      signal: o.signal,
    },
    run.cursor,
    first,
    (page, start, reqPos) => checkChain(run, page, reqPos, start),
  )
  o.onBootstrap?.(b)
  res.sealed += b.sealed
  res.pages += b.pages
  res.head = b.head
  res.cursor = run.cursor.token()
  o.onProgress?.({
    sealed: res.sealed,
    already: res.already,
    page: b.sealed,
    remaining: b.left,
    cursor: res.cursor,
    head: res.head,
  })
}

/** Stages pages from `startTok` on until the feed is done, a page is short, or an alarm. */
function startProducer(run: PullRun, startTok: string | null, startChain: string): Producer {
  const ac = new AbortController()
  const onAbort = () => ac.abort()
  run.o.signal?.addEventListener('abort', onAbort, { once: true })
  const queue = new PageQueue()
  const producing = (async () => {
    let tok = startTok
    let chain = startChain
    for (let slot = 0; ; slot = (slot + 1) % (AHEAD + 2)) {
      if (ac.signal.aborted) break
      const st = await stagePage(run, tok, chain, slot, ac.signal)
      await queue.push(st, ac.signal)
      if (st.alarm || !st.page.more || st.items.length === 0 || st.missing || st.fetchError) break
      tok = encodeCursor(st.items[st.items.length - 1]!)
      chain = st.endChain
    }
  })().then(
    () => queue.end(),
    (err: unknown) => queue.end(err),
  )
  const stop = async () => {
    ac.abort()
    await producing
    run.o.signal?.removeEventListener('abort', onAbort)
    // verifications of pages never sealed: let them finish (CPU only) before staging goes
    await Promise.all(queue.drain().map((st) => st.verification?.catch(() => undefined)))
  }
  return { queue, stop }
}

/** The core is not the one this POP followed, or went back in time: start over, loudly. */
function rebaseline(run: PullRun, st: Staged, res: PullResult): void {
  const { o } = run
  const alarm = st.alarm!
  run.rebaselined = true
  res.alarms.push(alarm)
  o.warn?.(alarm.message, { code: alarm.code, ...alarm.details })
  o.audit?.({
    kind: 'sync.alarm',
    actor: o.popId,
    outcome: 'alarm',
    reason: alarm.code,
    data: { message: alarm.message, ...alarm.details },
  })
  run.cursor.rebaseline(st.page.store_id, st.page.generation)
}

/**
 * Seals and indexes a staged page with the cursor (ingestStaged); a blob that did not
 * arrive or a failed transfer stops the run there; a whole page moves the cursor to its
 * end; progress is reported and the page's folder removed.
 */
async function sealPage(run: PullRun, st: Staged, res: PullResult): Promise<void> {
  const { o, cursor } = run
  const { page, items, runDir, fetchError, missing } = st
  cursor.follow(page.store_id, page.generation)
  await ingestStaged(o, cursor, st, res)
  if (missing) {
    throw (
      fetchError ??
      claError(
        'CLA_ERR_SYNC_PARTIAL',
        `${missing.path} was listed by the core but did not arrive; the cursor stays before it`,
        { details: { path: missing.path } },
      )
    )
  }
  if (fetchError) throw fetchError
  // Whole page sealed or held: the cursor reaches the page's end, which the checkpoint covers.
  if (items.length > 0) cursor.moveTo(items[items.length - 1]!, st.endChain)
  if (st.checkpoint) cursor.setCheckpoint(st.checkpoint)
  res.cursor = cursor.token()
  o.onProgress?.({
    sealed: res.sealed,
    already: res.already,
    page: items.length,
    remaining: Math.max(0, (page.remaining ?? items.length) - items.length),
    cursor: res.cursor,
    head: res.head,
  })
  await rm(runDir, { recursive: true, force: true })
}

/**
 * Seals a staged page's prefix with the verification done ahead: the verified files in
 * one batch with the cursor moved in the same transaction, up to the first file that
 * failed verification, which is then refused (audited; the cursor stays before it). If
 * the batch itself fails for a reason other than this host's, falls back to one file at
 * a time (ingestPrefix).
 */
async function ingestStaged(
  o: PullOptions,
  cursor: PopCursor,
  st: Staged,
  res: PullResult,
): Promise<void> {
  const { prefix, held, runDir, chains } = st
  if (prefix.length === 0) return
  const chainOf = (it: FeedItem) => chains.get(it.path)!
  const v = st.verification ? await st.verification : null
  if (!v) {
    // everything listed is held already
    const last = prefix[prefix.length - 1]!
    cursor.moveTo(last, chainOf(last))
    res.already += prefix.length
    return
  }
  const staged = prefix.filter((it) => !held.has(it.path))
  const badItem = v.bad ? staged[v.bad.index] : undefined
  const good = badItem ? prefix.slice(0, prefix.indexOf(badItem)) : prefix
  if (good.length > 0) {
    const n = v.verified.paths.length
    try {
      checkAbort(o.signal)
      if (n > 0) {
        const end = good[good.length - 1]!
        await o.store.ingest(v.verified, {
          inTransaction: (db) => cursor.moveWithin(db, end, chainOf(end)),
        })
      } else cursor.moveTo(good[good.length - 1]!, chainOf(good[good.length - 1]!))
      res.sealed += n
      res.already += good.length - n
    } catch (err) {
      if (isDiskFull(err)) throw diskFull(err)
      if (isHostFault(err)) throw err
      await ingestOneByOne(o, cursor, good, held, runDir, res, chainOf)
    }
  }
  if (badItem) throw refusedError(o, badItem, v.bad!.error)
}

/**
 * Where rsync put a listed blob: flat in the page's folder under its file name (rsync runs
 * with `flat`, see lib/pop-sync/rsync.ts). Names are unique within a store (created_at is
 * strictly increasing); runRsync refuses a page that lists one name twice.
 */
function stagedPath(runDir: string, it: FeedItem): string {
  return join(runDir, basename(it.path))
}

function expectOf(it: FeedItem): IngestExpect {
  return {
    path: it.path,
    p0: it.p0,
    size: it.size,
    file_size: it.file_size,
    sha256: it.sha256,
    created_at: it.created_at,
    seq: it.seq,
    file_sha256: it.file_sha256,
  }
}

/**
 * Where the first page's chain starts: the value verified at the cursor. A cursor with none
 * (the index lacks it) cannot be checked against the core: CLA_ERR_SYNC_CHAIN, audited.
 */
function startChainOf(run: PullRun): string {
  const c = run.cursor.chain()
  if (c !== null) return c
  throw chainAlarm(
    run.o,
    claError(
      'CLA_ERR_SYNC_CHAIN',
      `this POP has no chain value at its cursor ${run.cursor.token()}; run \`clavitor store verify\` on it`,
    ),
  )
}

/**
 * One file at a time, in feed order (the fallback when a verified batch is refused as a
 * whole): seals every good blob before the first bad one, the cursor moving with each, and
 * throws CLA_ERR_SYNC_VERIFY for the bad one.
 */
async function ingestOneByOne(
  o: PullOptions,
  cursor: PopCursor,
  prefix: FeedItem[],
  held: Set<string>,
  runDir: string,
  res: PullResult,
  chainOf: (it: FeedItem) => string,
): Promise<void> {
  for (const it of prefix) {
    checkAbort(o.signal)
    if (held.has(it.path)) {
      cursor.moveTo(it, chainOf(it))
      res.already++
      continue
    }
    try {
      await o.store.ingest(
        [{ file: stagedPath(runDir, it), expect: expectOf(it), verify: 'file-sha256' }],
        { inTransaction: (db) => cursor.moveWithin(db, it, chainOf(it)) },
      )
      res.sealed++
    } catch (err) {
      if (isDiskFull(err)) throw diskFull(err)
      if (isHostFault(err)) throw err
      throw refusedError(o, it, err)
    }
  }
}

/** µs now; exported for reports. */
export const now = nowMicros
