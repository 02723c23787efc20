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
  ingest(
    staged: Array<{ file: string; expect?: IngestExpect }>,
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
   * into the slot's folder. Pure preparation: nothing becomes visible here, so the next
   * page is staged while the current one is being ingested.
   */
  const stage = async (
    reqTok: string | null,
    slot: number,
    signal: AbortSignal | undefined,
  ): Promise<Staged> => {
    const runDir = join(o.stagingDir, `run-${slot}`)
    const page = await o.feed.page(reqTok, pageSize)
    const alarm = rebaselined ? null : identityCheck(o, page, decodeCursor(getMeta(o.db, K_CURSOR)))
    if (alarm) return { page, alarm, items: [], held: new Set(), runDir, fetchError: null }
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
        { ...o, ...(signal ? { signal } : {}) },
        toFetch,
        join(o.stagingDir, `files-from-${slot}.list`),
        runDir,
      )
    }
    return { page, alarm: null, items, held, runDir, fetchError }
  }

  let slot = 0
  let ahead: { promise: Promise<Staged>; ac: AbortController } | null = null
  const dropAhead = async () => {
    if (!ahead) return
    ahead.ac.abort()
    await ahead.promise.catch(() => undefined)
    ahead = null
  }
  try {
    for (;;) {
      checkAbort(o.signal)
      const st: Staged = ahead
        ? await ahead.promise
        : await stage(getMeta(o.db, K_CURSOR), slot, o.signal)
      ahead = null
      res.pages++
      res.head = st.page.head
      const { page, items, held, runDir, fetchError } = st

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

      // Stage the next page (feed + rsync) while this one is verified, sealed and indexed.
      if (page.more && items.length > 0 && !fetchError) {
        const ac = new AbortController()
        const onAbort = () => ac.abort()
        o.signal?.addEventListener('abort', onAbort, { once: true })
        slot ^= 1
        const promise = stage(encodeCursor(items[items.length - 1]!), slot, ac.signal).finally(() =>
          o.signal?.removeEventListener('abort', onAbort),
        )
        promise.catch(() => undefined) // awaited below; never an unhandled rejection
        ahead = { promise, ac }
      }

      // The contiguous prefix of the page that is held or fully staged: only it may move the cursor.
      const prefix: FeedItem[] = []
      let missing: FeedItem | undefined
      for (const it of items) {
        if (held.has(it.path) || existsSync(stagedPath(runDir, it))) prefix.push(it)
        else {
          missing = it
          break
        }
      }

      await ingestPrefix(o, prefix, held, runDir, res)

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
    await dropAhead()
  }
  res.cursor = getMeta(o.db, K_CURSOR)
  const pos = decodeCursor(res.cursor)
  res.lag_us = res.head ? Math.max(0, res.head.created_at - (pos?.created_at ?? 0)) : 0
  return res
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
 * Ingests the staged members of `prefix` in one batch, the cursor moving to the prefix's
 * last item in the same transaction. If the batch is refused (a file fails verification),
 * falls back to one file at a time so every good blob before the bad one is sealed and
 * the cursor stops right before the bad one; then throws CLA_ERR_SYNC_VERIFY.
 */
async function ingestPrefix(
  o: PullOptions,
  prefix: FeedItem[],
  held: Set<string>,
  runDir: string,
  res: PullResult,
): Promise<void> {
  if (prefix.length === 0) return
  const staged = prefix.filter((it) => !held.has(it.path))
  const lastTok = encodeCursor(prefix[prefix.length - 1]!)
  const advance = (tok: string) => (db: Db) => setMeta(db, K_CURSOR, tok)
  if (staged.length === 0) {
    o.db.transaction(() => setMeta(o.db, K_CURSOR, lastTok)).immediate()
    res.already += prefix.length
    return
  }
  try {
    checkAbort(o.signal)
    await o.store.ingest(
      staged.map((it) => ({ file: stagedPath(runDir, it), expect: expectOf(it) })),
      { inTransaction: advance(lastTok) },
    )
    res.sealed += staged.length
    res.already += prefix.length - staged.length
    return
  } catch (err) {
    if (isDiskFull(err)) throw diskFull(err)
    if (
      !isClavitorError(err) ||
      err.code === 'CLA_ERR_SYNC_ABORTED' ||
      err.code === 'CLA_ERR_SEAL_FAILED' ||
      err.code === 'CLA_ERR_STORE_SYNC_FAILED' ||
      err.code === 'CLA_ERR_STORE_CLOSED'
    )
      // A fault of this host (not of a file): retrying one at a time would only
      // relabel it as a verification failure.
      throw err
  }
  // One at a time, in feed order, to seal every good blob before the first bad one.
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
        inTransaction: advance(tok),
      })
      res.sealed++
    } catch (err) {
      if (isDiskFull(err)) throw diskFull(err)
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
      throw refused
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
