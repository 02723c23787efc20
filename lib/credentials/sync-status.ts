// Which POPs already hold each P0's latest version, for one customer.
//
// A POP reports its cursor (pop_sync_state.cursor): the (created_at, seq) of the last
// blob it has verified and sealed. Blobs are pulled in (created_at, seq) order, so the POP
// holds a blob exactly when the blob's (created_at, seq) is at or before its cursor. The
// cursor is opaque; lib/store's decodeCursor reads it. A POP without a cursor holds nothing; removed
// POPs are left out.
import type { Db } from '../db/open.js'
import { blobIndex } from '../store/blob-index.js'
import { claError } from '../errors.js'
import { decodeCursor, type CursorPos } from '../store/index.js'
import { clampLimit, pageByKey } from './registry.js'

/** A registered POP and how far it has replicated. */
export interface PopPosition {
  id: string
  name: string | null
  /** created_at and seq of the POP's cursor; null when it has none yet. */
  cursor_created_at: number | null
  /** seq of the POP's cursor; null when it has none yet. */
  cursor_seq: number | null
  /** µs epoch of its last report of a successful run. */
  last_success_at: number | null
  /** Its lag behind the core at its last report, µs; null when unknown (never reported, or it held no blob yet). */
  lag_us: number | null
}

/** Where the latest version of one P0 is held. */
export interface CredentialSyncStatus {
  p0: string
  /** The latest version's number (= the number of versions). */
  version: number
  /** The latest version's blob seq. */
  seq: number
  /** µs epoch of the latest version's blob. */
  created_at: number
  /** POP ids holding the latest version. */
  held_by: string[]
  /** POP ids not holding it yet. */
  missing_on: string[]
}

/** Which POPs hold each of a customer's P0s, one page of P0s. */
export interface SyncStatus {
  /** Every POP not removed, by id. */
  pops: PopPosition[]
  /** The customer's P0s, by P0. */
  items: CredentialSyncStatus[]
  /** Pass as `after` for the next page; null on the last page. */
  next: string | null
}

/**
 * Which POPs hold the latest version of each of a customer's P0s, one page of P0s after
 * `after`. A P0 whose latest blob the index lacks is left out; `next` is null only when no
 * listed P0 follows the page.
 */
export function syncStatus(
  db: Db,
  customerId: string,
  opts: { limit?: number; after?: string } = {},
): SyncStatus {
  const popRows = db
    .prepare(
      `SELECT p.id, p.name, s.cursor, s.last_success_at, s.lag_us
       FROM pops p LEFT JOIN pop_sync_state s ON s.pop_id = p.id
       WHERE p.removed_at IS NULL ORDER BY p.id`,
    )
    .all() as Array<{
    id: string
    name: string | null
    cursor: string | null
    last_success_at: number | null
    lag_us: number | null
  }>
  const pops: PopPosition[] = popRows.map((p) => {
    let pos: CursorPos | null = null
    try {
      if (p.cursor !== null && p.cursor !== '') pos = decodeCursor(p.cursor)
    } catch (cause) {
      throw claError('CLA_ERR_INTERNAL', `POP ${p.id} reported a cursor that cannot be decoded`, {
        cause,
        details: { pop: p.id },
      })
    }
    return {
      id: p.id,
      name: p.name,
      cursor_created_at: pos?.created_at ?? null,
      cursor_seq: pos?.seq ?? null,
      last_success_at: p.last_success_at,
      lag_us: p.lag_us,
    }
  })
  const limit = clampLimit(opts.limit)
  const index = blobIndex(db)
  const q = db.prepare(
    `SELECT c.p0, COUNT(*) AS versions, MAX(c.blob_seq) AS seq,
            (SELECT MAX(blob_seq) FROM credentials WHERE p0 = c.p0) AS latest_seq
     FROM credentials c
     WHERE c.customer_id = @customer AND c.p0 > @after
     GROUP BY c.p0 ORDER BY c.p0 LIMIT @limit`,
  )
  type Row = { p0: string; versions: number; seq: number; latest_seq: number }
  // when the P0's latest blob was made, from the store's index (it owns `blobs`); a P0
  // whose latest blob the index lacks is left out, as the join it replaces did, and the
  // page is filled from the P0s after it (pageByKey: `next` is null only at the real end)
  const { items: page, next } = pageByKey(
    (after, n) => q.all({ customer: customerId, after, limit: n }) as Row[],
    (r) => r.p0,
    ({ latest_seq, ...r }) => {
      const b = index.bySeq(latest_seq)
      return b ? { ...r, created_at: b.created_at } : null
    },
    limit,
    opts.after ?? '',
  )
  const items = page.map((r): CredentialSyncStatus => {
    const held_by: string[] = []
    const missing_on: string[] = []
    for (const p of pops) {
      const holds =
        p.cursor_created_at !== null &&
        p.cursor_seq !== null &&
        (r.created_at < p.cursor_created_at ||
          (r.created_at === p.cursor_created_at && r.seq <= p.cursor_seq))
      ;(holds ? held_by : missing_on).push(p.id)
    }
    return {
      p0: r.p0,
      version: r.versions,
      seq: r.seq,
      created_at: r.created_at,
      held_by,
      missing_on,
    }
  })
  return { pops, items, next }
}
