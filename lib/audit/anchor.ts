// Anchors of the audit chain in the WORM store: the chain head ({ id, hash }) written now
// and then as a sealed .cla under the reserved P0 AUDIT_ANCHOR_P0 (64 zeros). A sealed
// file cannot be changed or removed by whoever rewrites meta.db, so `audit verify` finds
// deleted trailing rows and a wholly rewritten events table.
//
// Payload and proof: lib/audit/anchor-payload.ts (v2: a statement signed by the store's
// key, so a file a vault placed at this P0 is never taken for an anchor).
//
// The credentials API and POP lookups refuse the reserved P0 (validateClientP0), but a
// store may hold files there from before that check. Both readers live with that: a file
// that is no trusted anchor is skipped, alarmed once (anchor-alarm.ts) and listed, and the
// work carries on. scanAnchors reads the .cla files from the store folder itself
// ({store}/00/000…0/*.cla), each verified, NOT the blobs index, which lives in the same
// SQLite file an attacker would edit.
import { micros } from '../clock.js'
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Db } from '../db/open.js'
import { isClavitorError } from '../errors.js'
import {
  AUDIT_ANCHOR_P0,
  shardOf,
  storePaths,
  verifyCla,
  type BlobInfo,
  type BlobStore,
} from '../store/index.js'
import { raiseAnchorAlarms, type SkippedAnchorFile } from './anchor-alarm.js'
import { encodeAnchor, readAnchorPayload, type AnchorReading } from './anchor-payload.js'
import { chainHead, type ChainAnchor } from './log.js'

export { AUDIT_ANCHOR_P0, RESERVED_P0S } from '../store/index.js'
export type { SkippedAnchorFile } from './anchor-alarm.js'

/** An anchor read from the store: the chain head it names, when, and its file. */
export interface AnchorRecord extends ChainAnchor {
  /** µs epoch when the anchor was written (as the anchor says). */
  at: number
  /** The .cla file, relative to the store root. */
  file: string
}

/** Every file at the anchor P0, sorted by what it is (scanAnchors). */
export interface AnchorScan {
  /** v2 anchors with a valid proof, oldest (lowest id) first: the ones verify checks. */
  trusted: AnchorRecord[]
  /** v1 anchors (no proof; possibly forged by a vault before the upgrade), oldest first. */
  legacy: AnchorRecord[]
  /** Files at the anchor P0 that are no anchor of ours, by name. */
  skipped: SkippedAnchorFile[]
}

/** Options of the anchor writer about foreign files at the anchor P0. */
export interface AnchorAlarmOptions {
  /** Told about files alarmed for the first time (the caller logs them loudly). */
  onAlarm?: (files: SkippedAnchorFile[]) => void
}

const why = (err: unknown): string =>
  isClavitorError(err) ? `${err.code}: ${err.message}` : String(err)

/** The newest anchor the writer can build on, and the foreign files newer than it. */
async function latestAnchor(
  store: BlobStore,
): Promise<{ latest: AnchorReading | undefined; skipped: SkippedAnchorFile[] }> {
  const skipped: SkippedAnchorFile[] = []
  const versions = store.versions(AUDIT_ANCHOR_P0)
  for (let i = versions.length - 1; i >= 0; i--) {
    const info = versions[i]!
    let reading: AnchorReading
    try {
      reading = readAnchorPayload(await store.readPayload(info), store)
    } catch (err) {
      // a closed store or an I/O fault is not the file's doing: stop and report it
      if (!isClavitorError(err) || err.code === 'CLA_ERR_STORE_CLOSED') throw err
      reading = { kind: 'foreign', why: why(err) }
    }
    if (reading.kind === 'foreign') skipped.push({ file: info.path, why: reading.why })
    else return { latest: reading, skipped }
  }
  return { latest: undefined, skipped }
}

/**
 * Writes the current chain head as a (v2, signed) anchor, unless the newest trusted anchor
 * already names it (or the log is empty). Files newer than that anchor which are no anchor
 * of ours are skipped and alarmed (once each; the alarm row is then part of the anchored
 * head). A legacy (v1) newest anchor is not built on: a new v2 anchor is written.
 * Returns the stored blob, or undefined when nothing was due.
 */
export async function writeAnchor(
  db: Db,
  store: BlobStore,
  opts: AnchorAlarmOptions = {},
): Promise<BlobInfo | undefined> {
  if (chainHead(db).id === 0) return undefined
  const { latest, skipped } = await latestAnchor(store)
  const fresh = raiseAnchorAlarms(db, skipped, 'anchor-writer')
  if (fresh.length > 0) opts.onAlarm?.(fresh)
  const head = chainHead(db)
  if (
    latest?.kind === 'trusted' &&
    latest.anchor.id === head.id &&
    latest.anchor.hash === head.hash
  ) {
    return undefined
  }
  return store.put(AUDIT_ANCHOR_P0, encodeAnchor({ ...head, at: micros() }, store))
}

/**
 * Every file at the anchor P0 of the store at `dataDir`, read from the folder (not the
 * index) and sorted into trusted anchors, legacy anchors and skipped files. A file whose
 * .cla does not verify (sha256, signature by a trusted key, header P0) is skipped too.
 * Never throws for a file's content; throws only when the folder cannot be read.
 */
export function scanAnchors(dataDir: string, store: BlobStore): AnchorScan {
  const scan: AnchorScan = { trusted: [], legacy: [], skipped: [] }
  const dir = join(storePaths(dataDir).root, shardOf(AUDIT_ANCHOR_P0), AUDIT_ANCHOR_P0)
  if (!existsSync(dir)) return scan
  for (const name of readdirSync(dir)
    .filter((n) => n.endsWith('.cla'))
    .sort()) {
    const file = `${shardOf(AUDIT_ANCHOR_P0)}/${AUDIT_ANCHOR_P0}/${name}`
    const bytes = readFileSync(join(dir, name))
    let reading: AnchorReading
    try {
      const d = verifyCla(bytes, store.trustedKeys, file)
      reading =
        d.p0 === AUDIT_ANCHOR_P0
          ? readAnchorPayload(Buffer.from(d.payload), store)
          : { kind: 'foreign', why: `the .cla header names another P0 (${d.p0})` }
    } catch (err) {
      if (!isClavitorError(err)) throw err
      reading = { kind: 'foreign', why: why(err) }
    }
    if (reading.kind === 'foreign') scan.skipped.push({ file, why: reading.why })
    else scan[reading.kind].push({ ...reading.anchor, file })
  }
  scan.trusted.sort((a, b) => a.id - b.id)
  scan.legacy.sort((a, b) => a.id - b.id)
  return scan
}

/**
 * Writes an anchor every `intervalMs` (default 10 minutes) while the process runs.
 * Failures go to `onError`, first-time alarms to `onAlarm` (the caller logs them);
 * returns a stop function.
 */
export function startAnchorTimer(
  db: Db,
  store: BlobStore,
  opts: { intervalMs?: number; onError?: (err: unknown) => void } & AnchorAlarmOptions = {},
): () => void {
  let running = false
  const timer = setInterval(() => {
    if (running) return
    running = true
    writeAnchor(db, store, opts.onAlarm ? { onAlarm: opts.onAlarm } : {})
      .catch((err) => opts.onError?.(err))
      .finally(() => {
        running = false
      })
  }, opts.intervalMs ?? 600_000)
  timer.unref()
  return () => clearInterval(timer)
}
