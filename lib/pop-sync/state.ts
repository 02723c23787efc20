// The POP's own replication state, in its meta table (same database as its store index,
// so the cursor moves in the same transaction that indexes the blobs it covers).
//
//   sync.cursor          feed cursor of the last blob sealed here, in feed order
//   sync.core_store_id   the core store this POP replicates
//   sync.core_generation that store's generation when last seen
//   sync.last_run        JSON of the last run's outcome (for /healthz and reports)
//   sync.chain           the replication log's chain value at the cursor, as verified
//   sync.checkpoint      JSON of the newest core checkpoint verified at the cursor (freshness)
import type { Db } from '../db/open.js'
import { getMeta, setMeta } from '../db/meta.js'

export const K_CURSOR = 'sync.cursor'
export const K_STORE_ID = 'sync.core_store_id'
export const K_GENERATION = 'sync.core_generation'
export const K_LAST_RUN = 'sync.last_run'
export const K_CHAIN = 'sync.chain'
export const K_CHECKPOINT = 'sync.checkpoint'
/** ms epoch of the last local quick check (lib/pop-sync/repair.ts quickCheck; a bootstrap sets it too). */
export const K_LAST_CHECK = 'sync.last_quick_check'

// the one meta store (lib/db/meta.ts); re-exported for the replication code
export { getMeta, setMeta }

/** The outcome of the POP's last sync run (meta `sync.last_run`), for /healthz and reports. */
export interface LastRun {
  /** When the run ended, µs since the Unix epoch. */
  at: number
  /** False when the run failed. */
  ok: boolean
  /** The failure, or on success the first identity alarm; null otherwise. */
  error: { code: string; message: string } | null
  /** the core's newest created_at minus this POP's cursor, µs, when known */
  lag_us: number | null
  /** Blobs sealed by the run. */
  sealed: number
  /** Listed blobs the POP already held. */
  already: number
  /** Identity alarms of the run (store mismatch, cursor ahead), each followed by a re-baseline. */
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
