// Alarms for files at the audit anchor P0 that the anchor writer did not make (a vault's
// registration through an older core, a damaged file). Each such file is alarmed once: an
// `events` row (kind audit.alarm, outcome alarm, reason anchor_foreign, data { file, why,
// found_by }); later runs find the row and stay quiet, so a WORM file that can never go
// away does not fill the log. The caller still lists the file in its own result.
import type { Db } from '../db/open.js'
import { claError, isClavitorError } from '../errors.js'
import { appendEvent } from './log.js'

export const ANCHOR_ALARM_KIND = 'audit.alarm'
export const ANCHOR_FOREIGN_REASON = 'anchor_foreign'

/** A file at the anchor P0 that is no anchor of ours (alarmed once, then listed). */
export interface SkippedAnchorFile {
  /** The .cla file, relative to the store root. */
  file: string
  /** Why it is no anchor of ours. */
  why: string
}

/** Files already alarmed (the `file` of every anchor_foreign row). */
function alarmedFiles(db: Db): Set<string> {
  const rows = db
    .prepare('SELECT data FROM events WHERE kind = ? AND reason = ?')
    .pluck()
    .all(ANCHOR_ALARM_KIND, ANCHOR_FOREIGN_REASON) as Array<string | null>
  const out = new Set<string>()
  for (const d of rows) {
    try {
      const file = (JSON.parse(d ?? 'null') as { file?: unknown } | null)?.file
      if (typeof file === 'string') out.add(file)
    } catch {
      // a row we did not write: ignore
    }
  }
  return out
}

/**
 * Writes one alarm row per file not alarmed before, all in one transaction, and returns
 * those files (empty when every one was known). Throws CLA_ERR_AUDIT_WRITE_FAILED when
 * the rows cannot be written.
 */
export function raiseAnchorAlarms(
  db: Db,
  files: readonly SkippedAnchorFile[],
  foundBy: 'audit-verify' | 'anchor-writer',
): SkippedAnchorFile[] {
  if (files.length === 0) return []
  const known = alarmedFiles(db)
  const fresh = files.filter((f) => !known.has(f.file))
  if (fresh.length === 0) return []
  try {
    db.transaction(() => {
      for (const f of fresh) {
        appendEvent(db, {
          kind: ANCHOR_ALARM_KIND,
          actor: 'system',
          outcome: 'alarm',
          reason: ANCHOR_FOREIGN_REASON,
          data: { file: f.file, why: f.why, found_by: foundBy },
        })
      }
    }).immediate()
  } catch (cause) {
    if (isClavitorError(cause)) throw cause
    throw claError(
      'CLA_ERR_AUDIT_WRITE_FAILED',
      `cannot write the audit log: ${(cause as Error).message}`,
      { cause },
    )
  }
  return fresh
}
