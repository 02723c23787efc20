// The core's view of each POP's replication: what a POP reports after each run lands in
// pop_sync_state (one row per POP) and a pop_lag_samples row (the dashboard's lag chart).
import type { Db } from '../db/open.js'
import { nowMicros } from '../db/open.js'
import { claError } from '../errors.js'
import { decodeCursor } from '../store/cursor.js'
import { feedHead } from './feed.js'

/** What a POP sends after a run (POST /pop/v1/report). */
export interface PopReport {
  /** The POP's cursor after the run (null: holds nothing yet). */
  cursor: string | null
  /** true when the run caught up without error. */
  ok: boolean
  /** The error of a failed run: stable code and a message. */
  error?: { code: string; message: string } | null
  /** Blobs the POP holds (sealed and indexed). */
  blobs?: number
}

/** The core's record of one POP's replication (table pop_sync_state), from its reports. */
export interface PopSyncRow {
  /** The POP's id. */
  pop_id: string
  /** The POP's cursor as of its last report (null: holds nothing yet). */
  cursor: string | null
  /** µs epoch of the last report of a successful run. */
  last_success_at: number | null
  /**
   * The error of the last report, `CODE: message`: a failed run's, or the identity alarm of
   * a successful one; null once a run succeeds without an alarm (cleared, not kept).
   */
  last_error: string | null
  /**
   * µs epoch of the last error reported: kept after a success clears `last_error`, as the
   * history of when this POP last failed.
   */
  last_error_at: number | null
  /**
   * The core's newest created_at minus the POP's cursor at the last report, µs; null when
   * unknown (the POP held no blob yet while the core held some).
   */
  lag_us: number | null
  /** Blobs the POP said it holds. */
  blobs: number | null
  /** µs epoch of the last report. */
  updated_at: number
}

const MAX_ERROR_CHARS = 2000

export function validateReport(body: unknown): PopReport {
  const b = body as Record<string, unknown> | null
  const bad = (field: string, what: string) =>
    claError('CLA_ERR_INVALID_INPUT', `report.${field} ${what}`, { details: { field } })
  if (!b || typeof b !== 'object' || Array.isArray(b)) throw bad('body', 'must be a JSON object')
  if (b.cursor !== null && typeof b.cursor !== 'string')
    throw bad('cursor', 'must be a string or null')
  decodeCursor(b.cursor as string | null)
  if (typeof b.ok !== 'boolean') throw bad('ok', 'must be true or false')
  let error: PopReport['error'] = null
  if (b.error !== undefined && b.error !== null) {
    const e = b.error as Record<string, unknown>
    if (typeof e !== 'object' || typeof e.code !== 'string' || typeof e.message !== 'string')
      throw bad('error', 'must be {code, message} strings or null')
    error = { code: e.code.slice(0, 100), message: e.message.slice(0, MAX_ERROR_CHARS) }
  }
  if (b.blobs !== undefined && !(Number.isSafeInteger(b.blobs) && (b.blobs as number) >= 0))
    throw bad('blobs', 'must be a non-negative integer')
  return {
    cursor: b.cursor as string | null,
    ok: b.ok,
    error,
    ...(b.blobs !== undefined ? { blobs: b.blobs as number } : {}),
  }
}

/**
 * Lag: the core's newest created_at minus the POP's cursor (0 when caught up, or when the
 * core holds nothing). null when the POP holds nothing yet while the core holds blobs: there
 * is no position to measure from (the time since 1970 would be a lie), so the lag is unknown.
 */
export function lagMicros(db: Db, cursor: string | null): number | null {
  const head = feedHead(db)
  if (!head) return 0
  const pos = decodeCursor(cursor)
  if (!pos) return null
  return Math.max(0, head.created_at - pos.created_at)
}

/** Records a report from a registered POP; returns the stored row. */
export function recordReport(
  db: Db,
  popId: string,
  report: PopReport,
  at: number = nowMicros(),
): PopSyncRow {
  const pop = db.prepare('SELECT id, removed_at FROM pops WHERE id = ?').get(popId) as
    { id: string; removed_at: number | null } | undefined
  if (!pop || pop.removed_at !== null) {
    throw claError(
      'CLA_ERR_SYNC_UNKNOWN_POP',
      `POP ${JSON.stringify(popId)} is not registered on this core`,
      {
        details: { pop_id: popId },
      },
    )
  }
  const lag = lagMicros(db, report.cursor)
  const errText = report.error ? `${report.error.code}: ${report.error.message}` : null
  const tx = db.transaction(() => {
    db.prepare(
      `INSERT INTO pop_sync_state (pop_id, cursor, last_success_at, last_error, last_error_at, lag_us, blobs, updated_at)
       VALUES (@pop_id, @cursor, @success, @err, @err_at, @lag, @blobs, @at)
       ON CONFLICT (pop_id) DO UPDATE SET
         cursor = excluded.cursor,
         last_success_at = COALESCE(excluded.last_success_at, pop_sync_state.last_success_at),
         last_error = excluded.last_error,
         last_error_at = COALESCE(excluded.last_error_at, pop_sync_state.last_error_at),
         lag_us = excluded.lag_us,
         blobs = COALESCE(excluded.blobs, pop_sync_state.blobs),
         updated_at = excluded.updated_at`,
    ).run({
      pop_id: popId,
      cursor: report.cursor,
      success: report.ok ? at : null,
      // The current error: a failed run's, or the alarm an ok run may carry (store identity
      // re-baselined); a clean success clears it. Its time (err_at) is not cleared: it stays
      // the record of when this POP last failed (compare with last_success_at).
      err: errText ?? (report.ok ? null : 'failed without a message'),
      err_at: errText || !report.ok ? at : null,
      lag,
      blobs: report.blobs ?? null,
      at,
    })
    // an unknown lag is no point on the chart
    if (lag !== null)
      db.prepare(
        'INSERT OR REPLACE INTO pop_lag_samples (pop_id, at, lag_us) VALUES (?, ?, ?)',
      ).run(popId, at, lag)
  })
  tx.immediate()
  return db.prepare('SELECT * FROM pop_sync_state WHERE pop_id = ?').get(popId) as PopSyncRow
}

/** A registered POP (removed ones included) and its sync state, if it ever reported. */
export interface PopListing {
  id: string
  /** Display name given at registration. */
  name: string | null
  /** µs epoch of its removal; null while registered. */
  removed_at: number | null
  /** Its last reported state; null when it never reported. */
  sync: Omit<PopSyncRow, 'pop_id'> | null
}

/** Every POP with its sync state (for `clavitor core pops`). */
export function listPopSyncStates(db: Db): PopListing[] {
  const rows = db
    .prepare(
      `SELECT p.id, p.name, p.removed_at, s.cursor, s.last_success_at, s.last_error, s.last_error_at,
              s.lag_us, s.blobs, s.updated_at
         FROM pops p LEFT JOIN pop_sync_state s ON s.pop_id = p.id ORDER BY p.id`,
    )
    .all() as Array<Record<string, unknown>>
  return rows.map((r) => ({
    id: r.id as string,
    name: (r.name as string | null) ?? null,
    removed_at: (r.removed_at as number | null) ?? null,
    sync:
      r.updated_at === null
        ? null
        : {
            cursor: r.cursor as string | null,
            last_success_at: r.last_success_at as number | null,
            last_error: r.last_error as string | null,
            last_error_at: r.last_error_at as number | null,
            lag_us: r.lag_us as number | null,
            blobs: r.blobs as number | null,
            updated_at: r.updated_at as number,
          },
  }))
}
