// Anchors of the audit chain in the WORM store: the chain head ({ id, hash }) written now
// and then as a sealed .cla under the reserved P0 AUDIT_ANCHOR_P0 (64 zeros). A sealed
// file cannot be changed or removed by whoever rewrites meta.db, so `audit verify` finds
// deleted trailing rows and a wholly rewritten events table.
//
// Payload (JSON, UTF-8): {"v":1,"type":"clavitor.audit.anchor","id":N,"hash":"<hex>","at":µs}
//
// loadAnchors reads the .cla files from the store folder itself ({store}/00/000…0/*.cla),
// each verified (sha256 + signature by a trusted key), NOT the blobs index, which lives
// in the same SQLite file an attacker would edit.
import { existsSync, readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import { storePaths, type BlobStore, type BlobInfo } from '../store/index.js'
import { shardOf, verifyCla } from '../store/index.js'
import { chainHead, type ChainAnchor } from './log.js'

/** Reserved P0 for audit anchors; the credentials API must refuse it. */
export const AUDIT_ANCHOR_P0 = '0'.repeat(64)
export const RESERVED_P0S: readonly string[] = [AUDIT_ANCHOR_P0]

export interface AnchorRecord extends ChainAnchor {
  at: number
  /** The .cla file, relative to the store root. */
  file: string
}

function encode(a: ChainAnchor, at: number): Buffer {
  return Buffer.from(
    JSON.stringify({ v: 1, type: 'clavitor.audit.anchor', id: a.id, hash: a.hash, at }),
    'utf8',
  )
}

function decode(payload: Buffer, file: string): { id: number; hash: string; at: number } {
  let j: { v?: unknown; type?: unknown; id?: unknown; hash?: unknown; at?: unknown }
  try {
    j = JSON.parse(payload.toString('utf8')) as typeof j
  } catch (cause) {
    throw claError('CLA_ERR_BAD_FORMAT', `audit anchor ${file} is not JSON`, { cause })
  }
  if (
    j.v !== 1 ||
    j.type !== 'clavitor.audit.anchor' ||
    !Number.isSafeInteger(j.id) ||
    typeof j.hash !== 'string' ||
    !/^[0-9a-f]{64}$/.test(j.hash)
  ) {
    throw claError('CLA_ERR_BAD_FORMAT', `audit anchor ${file} has an unexpected shape`)
  }
  return { id: j.id as number, hash: j.hash, at: Number(j.at ?? 0) }
}

/**
 * Writes the current chain head as an anchor, unless the newest anchor already names it
 * (or the log is empty). Returns the stored blob, or undefined when nothing was due.
 */
export async function writeAnchor(db: Db, store: BlobStore): Promise<BlobInfo | undefined> {
  const head = chainHead(db)
  if (head.id === 0) return undefined
  const latest = store.latest(AUDIT_ANCHOR_P0)
  if (latest) {
    const prev = decode(await store.readPayload(latest), latest.path)
    if (prev.id === head.id && prev.hash === head.hash) return undefined
  }
  return store.put(AUDIT_ANCHOR_P0, encode(head, Date.now() * 1000))
}

/**
 * Every anchor file of the store at `dataDir`, verified against `store`'s trusted keys,
 * oldest first. A file that does not verify throws (CLA_ERR_BAD_HASH / BAD_SIGNATURE / …).
 */
export function loadAnchors(dataDir: string, store: BlobStore): AnchorRecord[] {
  const dir = join(storePaths(dataDir).root, shardOf(AUDIT_ANCHOR_P0), AUDIT_ANCHOR_P0)
  if (!existsSync(dir)) return []
  const out: AnchorRecord[] = []
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.cla'))) {
    const rel = `${shardOf(AUDIT_ANCHOR_P0)}/${AUDIT_ANCHOR_P0}/${name}`
    const d = verifyCla(readFileSync(join(dir, name)), store.trustedKeys, rel)
    if (d.p0 !== AUDIT_ANCHOR_P0) throw claError('CLA_ERR_BAD_FORMAT', `${rel} names another P0`)
    out.push({ ...decode(Buffer.from(d.payload), rel), file: rel })
  }
  return out.sort((a, b) => a.id - b.id)
}

/**
 * Writes an anchor every `intervalMs` (default 10 minutes) while the process runs.
 * Failures go to `onError` (the caller logs/alarms); returns a stop function.
 */
export function startAnchorTimer(
  db: Db,
  store: BlobStore,
  opts: { intervalMs?: number; onError?: (err: unknown) => void } = {},
): () => void {
  let running = false
  const timer = setInterval(() => {
    if (running) return
    running = true
    writeAnchor(db, store)
      .catch((err) => opts.onError?.(err))
      .finally(() => {
        running = false
      })
  }, opts.intervalMs ?? 600_000)
  timer.unref()
  return () => clearInterval(timer)
}
