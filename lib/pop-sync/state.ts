// The POP's own replication state, in its meta table (same database as its store index,
// so the cursor moves in the same transaction that indexes the blobs it covers).
//
//   sync.cursor          feed cursor of the last blob sealed here, in feed order
//   sync.core_store_id   the core store this POP replicates
//   sync.core_generation that store's generation when last seen
//   sync.last_run        JSON of the last run's outcome (for /healthz and reports)
import type { Db } from '../db/open.js'
import { getMeta, setMeta } from '../db/meta.js'

export const K_CURSOR = 'sync.cursor'
export const K_STORE_ID = 'sync.core_store_id'
export const K_GENERATION = 'sync.core_generation'
export const K_LAST_RUN = 'sync.last_run'

// the one meta store (lib/db/meta.ts), re-exported for the replication code
// the one meta store (lib/db/meta.ts); re-exported for the replication code
export { getMeta, setMeta }

export interface LastRun {
  at: number
  ok: boolean
  error: { code: string; message: string } | null
  /** the core's newest created_at minus this POP's cursor, µs, when known */
  lag_us: number | null
  sealed: number
  already: number
  alarms: Array<{ code: string; message: string }>
}

export function getLastRun(db: Db): LastRun | null {
  const v = getMeta(db, K_LAST_RUN)
  if (!v) return null
  try {
    return JSON.parse(v) as LastRun
  } catch {
    return null
  }
}

export function setLastRun(db: Db, run: LastRun): void {
  setMeta(db, K_LAST_RUN, JSON.stringify(run))
}
