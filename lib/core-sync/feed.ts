// The core's change feed: the page of indexed blobs after a cursor, in (created_at, seq)
// order, with the core store's identity so a POP can tell a restored or different store.
// Reads the store's index through lib/store/blob-index.ts; never touches the files.
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import { blobIndex, type FeedRow } from '../store/blob-index.js'
import type { Checkpoint } from '../store/checkpoint.js'
import type { Checkpointer } from './checkpointer.js'
import type { FeedWaiters } from './feed-wait.js'
import { decodeCursor, encodeCursor, type CursorPos } from '../store/cursor.js'

/** Page size when the request names no limit. */
export const FEED_DEFAULT_LIMIT = 1000
/** Upper bound of a page: the list file rsync reads a byte at a time stays small. */
export const FEED_MAX_LIMIT = 5000

/** One blob of a feed page, in the feed's field order (lib/store/blob-index.ts). */
export type FeedItem = FeedRow

/** One page of the core's change feed (GET /pop/v1/feed). */
export interface FeedPage {
  /** The core store's identity; a POP replicates exactly one. */
  store_id: string
  /** Bumped by the core when its store is restored or rebuilt. */
  generation: number
  /** The core's newest blob, or null when it holds none. */
  head: CursorPos | null
  /** Published blobs after the request's cursor, in (created_at, seq) order. */
  items: FeedItem[]
  /** Cursor after the last item (the request's cursor when the page is empty). */
  next: string | null
  /** More items follow `next`. */
  more: boolean
  /** Blobs after the request's cursor, this page included (for progress and lag in blobs). */
  remaining: number
  /**
   * The core's signed checkpoint of its replication log at the page's last item, or at its
   * head when the page is empty (lib/store/checkpoint.ts): the POP recomputes the chain over
   * the items from its own last verified position and must reach exactly this value.
   */
  checkpoint: Checkpoint
}

/** The core store the feed reads: its database and identity. */
export interface FeedSource {
  /** The database holding the store's index (meta.db). */
  db: Db
  /** The core store's id (store.json). */
  storeId: string
  /** The core store's generation (store.json). */
  generation: number
  /** Signs the page's checkpoint (a {@link Checkpointer} over the core store). */
  checkpoints: Pick<Checkpointer, 'at'>
}

/** A feed request: where to start and how many items. */
export interface FeedQuery {
  /** The `next` token of the previous page; null or absent: from the start. */
  cursor?: string | null
  /** Items per page, 1 to {@link FEED_MAX_LIMIT}. Default {@link FEED_DEFAULT_LIMIT}. */
  limit?: number
}

/**
 * Longest long-poll a POP may ask for, seconds: below the POP API's idle-socket timeout
 * (60 s by default) and the usual proxy timeouts, so a wait ends with an answer, not a cut.
 */
export const FEED_MAX_WAIT_S = 50

/**
 * The `wait` of a feed request, in seconds (0 to `maxS`; absent: 0, answer at once), as ms.
 * CLA_ERR_INVALID_INPUT otherwise.
 */
export function parseWait(wait: unknown, maxS = FEED_MAX_WAIT_S): number {
  if (wait === undefined || wait === null || wait === '') return 0
  const n = typeof wait === 'number' ? wait : /^\d{1,4}$/.test(String(wait)) ? Number(wait) : NaN
  if (!Number.isInteger(n) || n < 0 || n > maxS) {
    throw claError('CLA_ERR_INVALID_INPUT', `wait must be an integer from 0 to ${maxS} (seconds)`, {
      details: { field: 'wait' },
    })
  }
  return n * 1000
}

export function parseLimit(limit: unknown): number {
  if (limit === undefined || limit === null || limit === '') return FEED_DEFAULT_LIMIT
  const n =
    typeof limit === 'number' ? limit : /^\d{1,7}$/.test(String(limit)) ? Number(limit) : NaN
  if (!Number.isInteger(n) || n < 1 || n > FEED_MAX_LIMIT) {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      `limit must be an integer from 1 to ${FEED_MAX_LIMIT}`,
      { details: { field: 'limit' } },
    )
  }
  return n
}

/** The core's newest (created_at, seq), or null. */
export function feedHead(db: Db): CursorPos | null {
  return blobIndex(db).head()
}

/** One page of the feed. Reads in one implicit read transaction (a consistent snapshot). */
export function feedPage(src: FeedSource, q: FeedQuery = {}): FeedPage {
  const pos = decodeCursor(q.cursor)
  const limit = parseLimit(q.limit)
  const ix = blobIndex(src.db)
  const read = src.db.transaction(() => {
    const rows: FeedItem[] = ix.feedAfter(pos, limit + 1)
    return { rows, head: ix.head(), remaining: ix.countAfter(pos) }
  })
  const { rows, head, remaining } = read.deferred()
  const more = rows.length > limit
  const items = more ? rows.slice(0, limit) : rows
  const last = items[items.length - 1]
  const covered = last ? { created_at: last.created_at, seq: last.seq } : head
  return {
    store_id: src.storeId,
    generation: src.generation,
    head,
    items,
    next: last ? encodeCursor(last) : pos ? encodeCursor(pos) : null,
    more,
    remaining,
    checkpoint: src.checkpoints.at(covered),
  }
}

/**
 * The long-poll form of {@link feedPage} (GET /pop/v1/feed?wait=…): when nothing lies past
 * the cursor, waits up to `waitMs` for a blob to commit (lib/core-sync/feed-wait.ts), then
 * answers the page as it stands (empty after a timeout, with a fresh checkpoint of the head).
 * One wait per POP: a second one ends the first with its (empty) page. A wait the server's
 * shutdown ends is CLA_ERR_SYNC_BUSY (503), not an empty page.
 */
export async function feedPageWaiting(
  src: FeedSource,
  waiters: Pick<FeedWaiters, 'wait'>,
  popId: string,
  q: FeedQuery & { waitMs: number; signal?: AbortSignal },
): Promise<FeedPage> {
  const page = feedPage(src, q)
  if (page.items.length > 0 || q.waitMs <= 0) return page
  const end = await waiters.wait(popId, decodeCursor(q.cursor), q.waitMs, q.signal)
  if (end === 'closed')
    // not an empty page: a POP would take that for a core that does not hold waits and
    // sleep out its wait; an error makes it ask again within a second or two
    throw claError('CLA_ERR_SYNC_BUSY', 'the core is shutting down; ask again in a moment', {
      details: { reason: 'closing' },
    })
  return end === 'gone' ? page : feedPage(src, q)
}
