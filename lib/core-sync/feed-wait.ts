// The feed's long-poll on the core: POPs wait here for blobs past their cursor, and are
// answered as soon as one commits (GET /pop/v1/feed?wait=…, server/routes/sync.ts).
//
// Nothing polls SQLite per waiter. The store's publish signal (lib/store/publish-signal.ts)
// wakes this object: in-process when the writer is this process, through the hint file
// {data}/run/published (inotify) when it is another one (`core serve` writes, the POP API
// process serves the feed). A wake-up reads the core's head once, for every waiter, and
// answers those it passed; signals that arrive together are folded into one read.
import { systemClock, type Clock } from '../clock.js'
import { claError } from '../errors.js'
import type { Db } from '../db/open.js'
import { blobIndex } from '../store/blob-index.js'
import { compareCursor, type CursorPos } from '../store/cursor.js'
import { watchPublished } from '../store/publish-signal.js'
import type { BlobStore } from '../store/store.js'

/** How a wait ended. */
export type WaitEnd =
  /** A blob past the waiter's cursor is committed (or was when it came). */
  | 'new'
  /** Nothing new within the wait. */
  | 'timeout'
  /** The same POP started another wait: one waiter per POP. */
  | 'replaced'
  /** The request went away (its signal). */
  | 'gone'
  /** The waiters were closed: the server is shutting down. */
  | 'closed'

/** Default cap on waiters held at once (one per POP). */
export const FEED_MAX_WAITERS = 10_000

/** What {@link FeedWaiters} watches. */
export interface FeedWaitersOptions {
  /** The core's database (the store's index: its head). */
  db: Db
  /** The core's data folder: its publish hint file is watched for writers in other processes. */
  dataDir: string
  /** The core store in this process, when it writes here (its in-process signal). */
  store?: Pick<BlobStore, 'onPublished'>
  /** Waiters held at once; one more is refused with CLA_ERR_SYNC_BUSY. Default {@link FEED_MAX_WAITERS}. */
  maxWaiters?: number
  /** Timers (tests). Default the system's. */
  clock?: Clock
}

interface Waiter {
  popId: string
  pos: CursorPos | null
  done: (end: WaitEnd) => void
}

/**
 * The POPs waiting on the feed. One per POP; each ends at the first blob past its cursor,
 * at its timeout, when its request goes away, or when the same POP waits again.
 */
export class FeedWaiters {
  private readonly db: Db
  private readonly max: number
  private readonly clock: Clock
  private readonly byPop = new Map<string, Waiter>()
  private readonly unsubscribe: Array<() => void> = []
  private checkQueued = false
  private closed = false
  /** Wake-ups received (signals folded into one read count once). */
  wakeups = 0
  /** Reads of the core's head made for wake-ups (one per wake-up, whatever the waiters). */
  headReads = 0
  /** Waits answered because a blob came ('new'). */
  woken = 0

  constructor(opts: FeedWaitersOptions) {
    this.db = opts.db
    this.max = opts.maxWaiters ?? FEED_MAX_WAITERS
    this.clock = opts.clock ?? systemClock
    if (opts.store) this.unsubscribe.push(opts.store.onPublished(() => this.signal()))
    const w = watchPublished(opts.dataDir, () => this.signal())
    this.unsubscribe.push(() => w.close())
  }

  /** Waiters held now. */
  get size(): number {
    return this.byPop.size
  }

  /**
   * Waits until a published blob lies past `pos` (null: any blob), for at most `ms`. Answers
   * 'new' at once when one already does. A second wait of the same POP ends the first
   * ('replaced'). CLA_ERR_SYNC_BUSY when {@link FeedWaitersOptions.maxWaiters} are held.
   */
  wait(popId: string, pos: CursorPos | null, ms: number, signal?: AbortSignal): Promise<WaitEnd> {
    if (this.closed) return Promise.resolve('closed')
    if (signal?.aborted) return Promise.resolve('gone')
    if (this.behind(pos, blobIndex(this.db).head())) return Promise.resolve('new')
    this.byPop.get(popId)?.done('replaced')
    if (this.byPop.size >= this.max)
      throw claError(
        'CLA_ERR_SYNC_BUSY',
        `the core holds ${this.max} feed waits already; pull without waiting`,
        { details: { max: this.max } },
      )
    return new Promise<WaitEnd>((resolve) => {
      const timer = this.clock.setTimeout(() => w.done('timeout'), ms)
      const onAbort = () => w.done('gone')
      const w: Waiter = {
        popId,
        pos,
        done: (end) => {
          if (this.byPop.get(popId) !== w) return
          this.byPop.delete(popId)
          this.clock.clearTimeout(timer)
          signal?.removeEventListener('abort', onAbort)
          if (end === 'new') this.woken++
          resolve(end)
        },
      }
      this.byPop.set(popId, w)
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Ends every wait ('closed') and stops watching. */
  close(): void {
    this.closed = true
    for (const u of this.unsubscribe.splice(0)) u()
    for (const w of [...this.byPop.values()]) w.done('closed')
  }

  private behind(pos: CursorPos | null, head: CursorPos | null): boolean {
    return head !== null && compareCursor(pos, head) < 0
  }

  /** A commit happened: one read of the head on the next turn, for every waiter. */
  private signal(): void {
    if (this.checkQueued || this.closed) return
    this.checkQueued = true
    setImmediate(() => {
      this.checkQueued = false
      if (this.closed || this.byPop.size === 0) return
      this.wakeups++
      this.headReads++
      const head = blobIndex(this.db).head()
      for (const w of [...this.byPop.values()]) if (this.behind(w.pos, head)) w.done('new')
    })
  }
}
