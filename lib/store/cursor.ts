// The store's cursor: an opaque token of (created_at, seq) of the last blob a reader holds.
// changesAfter() issues it; the POP feed and credentials' sync status read it.
// Both numbers are strictly increasing together on the core, so "after the cursor" is the
// row-value comparison (created_at, seq) > (c, s). Token form: `c1.{created_at}.{seq}`.
import { claError } from '../errors.js'

/** A position in the change feed: the (created_at, seq) of the last blob a reader holds. */
export interface CursorPos {
  /** µs epoch of the last blob held. */
  created_at: number
  /** its sequence number. */
  seq: number
}

const RE = /^c1\.(\d{1,16})\.(\d{1,16})$/

/** The opaque token of `pos`: `c1.{created_at}.{seq}` (read back with {@link decodeCursor}). */
export function encodeCursor(pos: CursorPos): string {
  return `c1.${pos.created_at}.${pos.seq}`
}

/** Parses a token; null/empty means "from the start". Throws CLA_ERR_INVALID_CURSOR. */
export function decodeCursor(token: string | null | undefined): CursorPos | null {
  if (token === null || token === undefined || token === '') return null
  const m = RE.exec(token)
  const created_at = m ? Number(m[1]) : NaN
  const seq = m ? Number(m[2]) : NaN
  if (!m || !Number.isSafeInteger(created_at) || !Number.isSafeInteger(seq)) {
    throw claError(
      'CLA_ERR_INVALID_CURSOR',
      `cursor ${JSON.stringify(token).slice(0, 80)} is not a feed cursor (c1.<created_at>.<seq>)`,
      {
        details: { field: 'cursor' },
      },
    )
  }
  return { created_at, seq }
}

/** -1, 0, 1 like a sort comparator; null sorts before everything. */
export function compareCursor(a: CursorPos | null, b: CursorPos | null): number {
  if (a === null) return b === null ? 0 : -1
  if (b === null) return 1
  if (a.created_at !== b.created_at) return a.created_at < b.created_at ? -1 : 1
  if (a.seq !== b.seq) return a.seq < b.seq ? -1 : 1
  return 0
}
