// `clavitor audit verify` as one library call: the hash chain, checked against the
// trusted anchors in the WORM store; files at the anchor P0 that are no anchor of ours
// skipped and alarmed (once each); legacy (v1) anchors compared for the report only.
import type { Db } from '../db/open.js'
import type { BlobStore } from '../store/index.js'
import { raiseAnchorAlarms, type SkippedAnchorFile } from './anchor-alarm.js'
import { scanAnchors, type AnchorRecord } from './anchor.js'
import { verifyChain, type VerifyResult } from './log.js'

/** Where a legacy (v1) anchor and the intact chain disagree. */
export interface LegacyDisagreement {
  /** The anchor's .cla file, relative to the store root. */
  file: string
  /** The row the anchor names. */
  id: number
  /** What differs (row missing, or another hash). */
  reason: string
}

/**
 * The result of `clavitor audit verify` (verifyAuditTrail): the chain walk plus what the
 * anchors in the store showed.
 */
export type AuditTrailReport = VerifyResult & {
  /** Trusted (v2) anchors checked against the chain. */
  anchors: number
  /**
   * Legacy (v1) anchors: never trusted (a vault could have forged one before the upgrade),
   * compared with an intact chain for the operator to look at; never a failure.
   */
  legacy: { count: number; disagree: LegacyDisagreement[] }
  /** Files at the anchor P0 that are no anchor of ours: skipped (and alarmed once). */
  skipped: SkippedAnchorFile[]
  /**
   * On a POP: the core's anchors its replica holds. They anchor the core's log, not this
   * one, so they are counted and never checked against this chain.
   */
  coreAnchors?: number
}

/** Where a legacy anchor and an intact chain disagree. */
function compareLegacy(db: Db, legacy: readonly AnchorRecord[]): LegacyDisagreement[] {
  const hashOf = db.prepare('SELECT hash FROM events WHERE id = ?').pluck()
  const out: LegacyDisagreement[] = []
  for (const a of legacy) {
    const hash = hashOf.get(a.id) as string | undefined
    if (hash === undefined)
      out.push({ file: a.file, id: a.id, reason: `names row ${a.id}, which the log does not hold` })
    else if (hash !== a.hash)
      out.push({ file: a.file, id: a.id, reason: `row ${a.id} hash differs from this anchor` })
  }
  return out
}

/**
 * Verifies the audit trail of the core at `dataDir` (`db` and `store` open on it). With
 * `anchors: false` only the table is walked. Writes alarm rows for newly found foreign
 * files (CLA_ERR_AUDIT_WRITE_FAILED if it cannot).
 */
export function verifyAuditTrail(
  db: Db,
  dataDir: string,
  store: BlobStore,
  opts: { anchors?: boolean } = {},
): AuditTrailReport {
  const noAnchors = { anchors: 0, legacy: { count: 0, disagree: [] }, skipped: [] }
  if (opts.anchors === false) return { ...verifyChain(db), ...noAnchors }
  const scan = scanAnchors(dataDir, store)
  // A POP's store is a replica of the core's: the anchors in it name rows of the core's
  // log. Checked against the POP's own log they would fail on every POP; the POP's log
  // has no anchors of its own (it writes none into a store the core signs).
  if (store.role === 'pop')
    return { ...verifyChain(db), ...noAnchors, coreAnchors: scan.trusted.length }
  const result = verifyChain(db, { anchors: scan.trusted })
  // compare before the alarm rows below extend the log
  const disagree = result.ok ? compareLegacy(db, scan.legacy) : []
  raiseAnchorAlarms(db, scan.skipped, 'audit-verify')
  return {
    ...result,
    anchors: scan.trusted.length,
    legacy: { count: scan.legacy.length, disagree },
    skipped: scan.skipped,
  }
}
