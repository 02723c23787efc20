// The replication log's hash chain: every published blob, in feed order (created_at, seq),
// extends a running sha256 over (seq, created_at, path, sha256 of the whole .cla file).
// The store keeps each row's chain value in `blobs.chain`; the core signs checkpoints of
// it (lib/store/checkpoint.ts); a POP recomputes it over the feed from its own last
// verified position, so a skipped, reordered, inserted or altered entry changes every value
// after it. Byte layout and a test vector: docs/format.md "The replication log".
import { createHash } from 'node:crypto'
import { claError } from '../errors.js'

/** The chain value before the first blob: 32 zero bytes, as 64 hex characters. */
export const CHAIN_GENESIS = '0'.repeat(64)

/** What one log entry commits to: a published blob's place, name and exact bytes. */
export interface ChainEntry {
  /** The store's sequence number. */
  seq: number
  /** µs since the Unix epoch. */
  created_at: number
  /** Relative to the store root: {shard}/{p0}/{name}.cla (ASCII). */
  path: string
  /** sha256 of the whole .cla file, lowercase hex. */
  file_sha256: string
}

const HEX64 = /^[0-9a-f]{64}$/

/** sha256 of a whole .cla file (what the chain commits to), lowercase hex. */
export function fileSha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/**
 * The chain value after `e`: sha256(prev ‖ u64be seq ‖ u64be created_at ‖ u16be len(path) ‖
 * path ‖ file_sha256), with prev and file_sha256 as their 32 raw bytes.
 */
export function chainNext(prev: string, e: ChainEntry): string {
  if (!HEX64.test(prev) || !HEX64.test(e.file_sha256)) {
    throw claError('CLA_ERR_INVALID_INPUT', `a chain value and a file sha256 are 64 hex characters`)
  }
  const path = Buffer.from(e.path, 'utf8')
  const fixed = Buffer.allocUnsafe(18)
  fixed.writeBigUInt64BE(BigInt(e.seq), 0)
  fixed.writeBigUInt64BE(BigInt(e.created_at), 8)
  fixed.writeUInt16BE(path.length, 16)
  return createHash('sha256')
    .update(Buffer.from(prev, 'hex'))
    .update(fixed)
    .update(path)
    .update(Buffer.from(e.file_sha256, 'hex'))
    .digest('hex')
}

/** The chain value after every entry of `entries`, in order, from `start`. */
export function chainOver(start: string, entries: Iterable<ChainEntry>): string {
  let c = start
  for (const e of entries) c = chainNext(c, e)
  return c
}
