// One pull: feed page → bounded NUL list → `rsync --files-from` into a plain staging
// folder → store.ingest (verify size, sha256, signature, header against the feed; link,
// seal, index) with the cursor advanced in the same SQLite transaction → next page, until
// caught up. The cursor never passes a blob that is not sealed here: on any failure the
// run stops with the cursor at the last blob sealed, and the next run resumes from there.
import { existsSync } from 'node:fs'
import { mkdir, rm } from 'node:fs/promises'
import { basename, join } from 'node:path'
import type { AuditEventInput } from '../audit/log.js'
import type { Db } from '../db/open.js'
import { nowMicros } from '../db/open.js'
import { claError, isClavitorError, type ClavitorError } from '../errors.js'
import { compareCursor, decodeCursor, encodeCursor, type CursorPos } from '../store/cursor.js'
import { removeStagingTree } from '../store/seal.js'
import type { VerifiedStaged, VerifyStagedResult } from '../store/store.js'
import type { FeedItem, FeedPage } from './feed.js'
import { runRsync } from './rsync.js'
import { getMeta, K_CURSOR, K_GENERATION, K_STORE_ID, setMeta } from './state.js'
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
}

/** The part of the POP's BlobStore a pull needs (lib/store BlobStore satisfies it). */
export interface PullStore {
  /** The store root (to re-seal a store file whose second name a crash left in staging). */
  readonly root: string
  /** Reads and verifies staged files ahead of ingest (BlobStore.verifyStaged). */
  verifyStaged(staged: Array<{ file: string; expect?: IngestExpect }>): Promise<VerifyStagedResult>
  ingest(
    staged: Array<{ file: string; expect?: IngestExpect }> | VerifiedStaged,
    opts?: { inTransaction?: (db: Db) => void },
  ): Promise<unknown[]>
}

export interface RsyncSettings {
  /** `rsync://host:port/module/`, `user@host:/path/`, or a local folder. */
  source: string
  ioTimeoutSec?: number
  extraArgs?: readonly string[]
  env?: Record<string, string>
  rsyncPath?: string
}

export interface PullProgress {
  /** Blobs sealed in this run so far. */
  sealed: number
  /** Listed blobs this POP already held (not fetched again). */
  already: number
  /** Items in the page just done. */
  page: number
  /** Blobs the core still lists after this POP's cursor. */
  remaining: number
  cursor: string | null
  head: CursorPos | null
}

export interface PullOptions {
  /** POP id (audit actor). */
  popId: string
  /** The POP's metadata database (its store's index lives in it). */
  db: Db
  store: PullStore
  feed: FeedClient
  rsync: RsyncSettings
  /** Plain folder on the store's filesystem, never sealed. */
  stagingDir: string
  /** Feed page size (the rsync list bound). Default 1000. */
  pageSize?: number
  signal?: AbortSignal
  onProgress?: (p: PullProgress) => void
  /** Audit sink for alarms (appendEvent on the POP's db by default in lib/pop.ts). */
  audit?: (ev: AuditEventInput) => void
  /** Loud log line for alarms (pino in the agent). */
  warn?: (msg: string, data?: Record<string, unknown>) => void
}

export interface PullResult {
  sealed: number
  already: number
  pages: number
  cursor: string | null
  head: CursorPos | null
  /** Core newest created_at minus this POP's cursor (0 when caught up). */
  lag_us: number
  /** Identity alarms raised in this run (store mismatch, cursor ahead); the run carried on from a re-baseline. */
  alarms: ClavitorError[]
}

interface HeldRow {
  seq: number
  created_at: number
  path: string
  sha256: string
  size: number
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
        source: o.rsync.source,
        files: toFetch.map((i) => i.path),
        listFile,
        dest: runDir,
        flat: true,
        ...(o.rsync.ioTimeoutSec !== undefined ? { ioTimeoutSec: o.rsync.ioTimeoutSec } : {}),
        ...(o.rsync.extraArgs ? { extraArgs: o.rsync.extraArgs } : {}),
        ...(o.rsync.env ? { env: o.rsync.env } : {}),
        ...(o.rsync.rsyncPath ? { rsyncPath: o.rsync.rsyncPath } : {}),
        ...(o.signal ? { signal: o.signal } : {}),
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

/**
 * Identity and generation check. Returns an alarm when the POP must re-baseline: its
 * recorded store differs, or its cursor is ahead of the core's newest blob (restored core).
 * Re-baselining = cursor back to the start; every listed blob this POP already holds must
 * then match exactly (path, seq, sha256) and is counted without a fetch; anything else is a
 * conflict. Nothing is skipped silently and no two stores are mixed (blobs signed by
 * another core's key do not verify here).
 */
function identityCheck(
  o: PullOptions,
  page: FeedPage,
  cursor: CursorPos | null,
): ClavitorError | null {
  const storeId = getMeta(o.db, K_STORE_ID)
  const gen = getMeta(o.db, K_GENERATION)
  if (storeId !== null && storeId !== page.store_id) {
    return claError(
      'CLA_ERR_SYNC_STORE_MISMATCH',
      `the core now serves store ${page.store_id} but this POP replicated store ${storeId}; re-baselining from the start`,
      { details: { recorded: storeId, core: page.store_id } },
    )
  }
  if (gen !== null && Number(gen) !== page.generation) {
    return claError(
      'CLA_ERR_SYNC_STORE_MISMATCH',
      `the core's store generation changed from ${gen} to ${page.generation} (restored or rebuilt); re-baselining from the start`,
      { details: { recorded_generation: Number(gen), core_generation: page.generation } },
    )
  }
  // Only the cursor counts: after a re-baseline it sits at the core's head even when
  // this POP still holds (valid, signed) blobs the restored core lost.
  const ahead = cursor !== null && compareCursor(cursor, page.head) > 0 ? cursor : null
  if (ahead) {
    return claError(
      'CLA_ERR_SYNC_CURSOR_AHEAD',
      `this POP holds blobs up to ${encodeCursor(ahead)} but the core's newest is ${page.head ? encodeCursor(page.head) : 'none'} (core restored from a backup?); re-baselining from the start`,
      {
        details: {
          pop: encodeCursor(ahead),
          core_head: page.head ? encodeCursor(page.head) : null,
        },
      },
    )
  }
  return null
}

interface Staged {
  page: FeedPage
  /** Identity alarm: the page must not be used; re-baseline first. */
  alarm: ClavitorError | null
  items: FeedItem[]
  held: Set<string>
  runDir: string
  fetchError: ClavitorError | null
  /** The contiguous prefix of the page that is held or fully staged: only it may move the cursor. */
  prefix: FeedItem[]
  /** The first listed blob that did not arrive (the cursor stays before it). */
  missing: FeedItem | undefined
  /** Verification of the prefix's staged files, started as soon as rsync finished. */
  verification: Promise<VerifyStagedResult> | null
}

/** Pages staged ahead of the one being sealed: rsync of N+2 ‖ verify of N+1 ‖ seal of N. */
const AHEAD = 2

/**
 * A bounded, ordered hand-over from the page producer (feed, rsync, verification) to the
 * sealing loop. The producer waits while AHEAD pages wait; a producer failure reaches the
 * consumer after the pages produced before it.
 */
class PageQueue {
  private readonly buf: Staged[] = []
  private failure: { err: unknown } | null = null
  private done = false
  private wakeConsumer: (() => void) | null = null
  private wakeProducer: (() => void) | null = null

  async push(st: Staged, signal: AbortSignal): Promise<void> {
    while (this.buf.length >= AHEAD && !signal.aborted)
      await new Promise<void>((r) => {
        const wake = () => {
          signal.removeEventListener('abort', wake)
          this.wakeProducer = null
          r()
        }
        this.wakeProducer = wake
        signal.addEventListener('abort', wake, { once: true })
      })
    this.buf.push(st)
    this.wakeConsumer?.()
  }

  end(err?: unknown): void {
    if (err !== undefined) this.failure = { err }
    this.done = true
    this.wakeConsumer?.()
  }

  /** The next page, or null when the producer finished without another. */
  async shift(): Promise<Staged | null> {
    for (;;) {
      const st = this.buf.shift()
      if (st) {
        this.wakeProducer?.()
        return st
      }
      if (this.failure) throw this.failure.err
      if (this.done) return null
      await new Promise<void>((r) => (this.wakeConsumer = r))
    }
  }

  /** Pages staged but never consumed (their verification may still be running). */
  drain(): Staged[] {
    return this.buf.splice(0)
  }
}

export async function pullOnce(o: PullOptions): Promise<PullResult> {
  const pageSize = o.pageSize ?? 1000
  const heldByPath = o.db.prepare(
    'SELECT seq, created_at, path, sha256, size FROM blobs WHERE path = ?',
  )
  const heldBySeq = o.db.prepare(
    'SELECT seq, created_at, path, sha256, size FROM blobs WHERE seq = ?',
  )
  const res: PullResult = {
    sealed: 0,
    already: 0,
    pages: 0,
    cursor: getMeta(o.db, K_CURSOR),
    head: null,
    lag_us: 0,
    alarms: [],
  }
  let rebaselined = false

  // A crash between link and unlink can leave a staged name of a (since sealed) store file.
  await removeStagingTree(o.stagingDir, o.store.root)
  await mkdir(o.stagingDir, { recursive: true })

  /**
   * Feed page after `reqTok`, identity check, held/fetch split, rsync of what is missing
   * into the slot's folder, then verification of what arrived started (not awaited). Pure
   * preparation: nothing becomes visible here, so later pages are staged while an earlier
   * one is being sealed and indexed.
   */
  const stage = async (
    reqTok: string | null,
    slot: number,
    signal: AbortSignal,
  ): Promise<Staged> => {
    const runDir = join(o.stagingDir, `run-${slot}`)
    const page = await o.feed.page(reqTok, pageSize)
    const alarm = rebaselined ? null : identityCheck(o, page, decodeCursor(getMeta(o.db, K_CURSOR)))
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
      const byPath = heldByPath.get(it.path) as HeldRow | undefined
      const h = byPath ?? (heldBySeq.get(it.seq) as HeldRow | undefined)
      if (h) {
        if (
          h.path !== it.path ||
          h.seq !== it.seq ||
          h.sha256 !== it.sha256 ||
          h.created_at !== it.created_at ||
          h.size !== it.size
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
            staged.map((it) => ({ file: stagedPath(runDir, it), expect: expectOf(it) })),
          )
        : null
    verification?.catch(() => undefined) // awaited by the consumer; never unhandled
    return { page, alarm: null, items, held, runDir, fetchError, prefix, missing, verification }
  }

  /** Stages pages from `startTok` on until the feed is done, a page is short, or an alarm. */
  const startProducer = (startTok: string | null) => {
    const ac = new AbortController()
    const onAbort = () => ac.abort()
    o.signal?.addEventListener('abort', onAbort, { once: true })
    const queue = new PageQueue()
    const run = (async () => {
      let tok = startTok
      for (let slot = 0; ; slot = (slot + 1) % (AHEAD + 2)) {
        if (ac.signal.aborted) break
        const st = await stage(tok, slot, ac.signal)
        await queue.push(st, ac.signal)
        if (st.alarm || !st.page.more || st.items.length === 0 || st.missing || st.fetchError) break
        tok = encodeCursor(st.items[st.items.length - 1]!)
      }
    })().then(
      () => queue.end(),
      (err: unknown) => queue.end(err),
    )
    const stop = async () => {
      ac.abort()
      await run
      o.signal?.removeEventListener('abort', onAbort)
      // verifications of pages never sealed: let them finish (CPU only) before staging goes
      await Promise.all(queue.drain().map((st) => st.verification?.catch(() => undefined)))
    }
    return { queue, stop }
  }

  let producer = startProducer(getMeta(o.db, K_CURSOR))
  try {
    for (;;) {
      checkAbort(o.signal)
      const st = await producer.queue.shift()
      if (!st) break
      res.pages++
      res.head = st.page.head
      const { page, items, runDir, fetchError, missing } = st

      if (st.alarm) {
        const alarm = st.alarm
        rebaselined = true
        res.alarms.push(alarm)
        o.warn?.(alarm.message, { code: alarm.code, ...alarm.details })
        o.audit?.({
          kind: 'sync.alarm',
          actor: o.popId,
          outcome: 'alarm',
          reason: alarm.code,
          data: { message: alarm.message, ...alarm.details },
        })
        o.db
          .transaction(() => {
            setMeta(o.db, K_CURSOR, null)
            setMeta(o.db, K_STORE_ID, page.store_id)
            setMeta(o.db, K_GENERATION, String(page.generation))
          })
          .immediate()
        await producer.stop()
        producer = startProducer(null)
        continue
      }
      if (getMeta(o.db, K_STORE_ID) === null) {
        o.db
          .transaction(() => {
            setMeta(o.db, K_STORE_ID, page.store_id)
            setMeta(o.db, K_GENERATION, String(page.generation))
          })
          .immediate()
      }

      await ingestStaged(o, st, res)

      if (missing) {
        throw (
          fetchError ??
          claError(
            'CLA_ERR_SYNC_PARTIAL',
            `${missing.path} was listed by the core but did not arrive; the cursor stays before it`,
            {
              details: { path: missing.path },
            },
          )
        )
      }
      if (fetchError) throw fetchError

      // Whole page sealed or held: the cursor reaches the page's end.
      if (items.length > 0) {
        const tok = encodeCursor(items[items.length - 1]!)
        if (getMeta(o.db, K_CURSOR) !== tok)
          o.db.transaction(() => setMeta(o.db, K_CURSOR, tok)).immediate()
      }
      res.cursor = getMeta(o.db, K_CURSOR)
      o.onProgress?.({
        sealed: res.sealed,
        already: res.already,
        page: items.length,
        remaining: Math.max(0, (page.remaining ?? items.length) - items.length),
        cursor: res.cursor,
        head: res.head,
      })
      await rm(runDir, { recursive: true, force: true })
      if (!page.more || items.length === 0) break
    }
  } finally {
    await producer.stop()
  }
  res.cursor = getMeta(o.db, K_CURSOR)
  const pos = decodeCursor(res.cursor)
  res.lag_us = res.head ? Math.max(0, res.head.created_at - (pos?.created_at ?? 0)) : 0
  return res
}

/**
 * Seals a staged page's prefix with the verification done ahead: the verified files in
 * one batch with the cursor moved in the same transaction, up to the first file that
 * failed verification, which is then refused (audited; the cursor stays before it). If
 * the batch itself fails for a reason other than this host's, falls back to one file at
 * a time (ingestPrefix).
 */
async function ingestStaged(o: PullOptions, st: Staged, res: PullResult): Promise<void> {
  const { prefix, held, runDir } = st
  if (prefix.length === 0) return
  const v = st.verification ? await st.verification : null
  if (!v) {
    // everything listed is held already
    o.db
      .transaction(() => setMeta(o.db, K_CURSOR, encodeCursor(prefix[prefix.length - 1]!)))
      .immediate()
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
        await o.store.ingest(v.verified, {
          inTransaction: (db) => setMeta(db, K_CURSOR, encodeCursor(good[good.length - 1]!)),
        })
      } else {
        o.db
          .transaction(() => setMeta(o.db, K_CURSOR, encodeCursor(good[good.length - 1]!)))
          .immediate()
      }
      res.sealed += n
      res.already += good.length - n
    } catch (err) {
      if (isDiskFull(err)) throw diskFull(err)
      if (isHostFault(err)) throw err
      await ingestOneByOne(o, good, held, runDir, res)
    }
  }
  if (badItem) throw refusedError(o, badItem, v.bad!.error)
}

/** A fault of this host (not of a file): retrying file by file would only relabel it. */
function isHostFault(err: unknown): boolean {
  return (
    !isClavitorError(err) ||
    err.code === 'CLA_ERR_SYNC_ABORTED' ||
    err.code === 'CLA_ERR_SEAL_FAILED' ||
    err.code === 'CLA_ERR_STORE_SYNC_FAILED' ||
    err.code === 'CLA_ERR_STORE_CLOSED'
  )
}

/** CLA_ERR_SYNC_VERIFY for a blob the core served that this POP refused, audited. */
function refusedError(o: PullOptions, it: FeedItem, err: unknown): ClavitorError {
  const e = isClavitorError(err) ? err : null
  const refused = claError(
    'CLA_ERR_SYNC_VERIFY',
    `${it.path} from the core was refused (${e ? `${e.code}: ${e.message}` : (err as Error).message}); not sealed, the cursor stays before it`,
    { cause: err, details: { path: it.path, seq: it.seq, reason: e?.code ?? 'error' } },
  )
  o.audit?.({
    kind: 'sync.alarm',
    actor: o.popId,
    outcome: 'refused',
    reason: refused.code,
    data: { path: it.path, cause: e?.code ?? null },
  })
  return refused
}

/**
 * Where rsync put a listed blob: flat in the page's folder under its file name (rsync runs
 * with `flat`, see lib/sync/rsync.ts). Names are unique within a store (created_at is
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
  }
}

/**
 * One file at a time, in feed order (the fallback when a verified batch is refused as a
 * whole): seals every good blob before the first bad one, the cursor moving with each, and
 * throws CLA_ERR_SYNC_VERIFY for the bad one.
 */
async function ingestOneByOne(
  o: PullOptions,
  prefix: FeedItem[],
  held: Set<string>,
  runDir: string,
  res: PullResult,
): Promise<void> {
  for (const it of prefix) {
    checkAbort(o.signal)
    const tok = encodeCursor(it)
    if (held.has(it.path)) {
      o.db.transaction(() => setMeta(o.db, K_CURSOR, tok)).immediate()
      res.already++
      continue
    }
    try {
      await o.store.ingest([{ file: stagedPath(runDir, it), expect: expectOf(it) }], {
        inTransaction: (db) => setMeta(db, K_CURSOR, tok),
      })
      res.sealed++
    } catch (err) {
      if (isDiskFull(err)) throw diskFull(err)
      if (isHostFault(err)) throw err
      throw refusedError(o, it, err)
    }
  }
}

function isDiskFull(err: unknown): boolean {
  let e: unknown = err
  for (let i = 0; i < 5 && e; i++) {
    const code = (e as NodeJS.ErrnoException).code
    if (
      code === 'ENOSPC' ||
      code === 'SQLITE_FULL' ||
      /no space left on device/i.test((e as Error).message ?? '')
    )
      return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}

function diskFull(err: unknown): ClavitorError {
  return claError(
    'CLA_ERR_SYNC_DISK_FULL',
    'no space left on the POP disk while sealing; free space, the next run resumes',
    { cause: err },
  )
}

/** µs now; exported for reports. */
export const now = nowMicros
