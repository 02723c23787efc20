// How a pull names what stopped it: a fault of this host (retrying file by file would only
// relabel it), a full disk, or a blob from the core that this POP refused (audited).
import { claError, isClavitorError, type ClavitorError } from '../errors.js'
import type { FeedItem } from '../core-sync/feed.js'
import type { AuditEventInput } from '../audit/log.js'

/** Where a refusal is reported: the POP and its audit sink (PullOptions has both). */
export interface FaultSink {
  popId: string
  audit?: (ev: AuditEventInput) => void
}

/** A fault of this host (not of a file): retrying file by file would only relabel it. */
export function isHostFault(err: unknown): boolean {
  return (
    !isClavitorError(err) ||
    err.code === 'CLA_ERR_SYNC_ABORTED' ||
    err.code === 'CLA_ERR_SEAL_FAILED' ||
    err.code === 'CLA_ERR_STORE_SYNC_FAILED' ||
    err.code === 'CLA_ERR_STORE_CLOSED'
  )
}

/** CLA_ERR_SYNC_VERIFY for a blob the core served that this POP refused, audited. */
export function refusedError(o: FaultSink, it: FeedItem, err: unknown): ClavitorError {
  const e = isClavitorError(err) ? err : null
  const refused = claError(
    'CLA_ERR_SYNC_VERIFY',
    `${it.path} from the core was refused (${e ? `${e.code}: ${e.message}` : (err as Error).message}); not sealed, the cursor stays before it`,
    { cause: err, details: { path: it.path, seq: it.seq, reason: e?.code ?? 'error' } },
  )
  o.audit?.({
    kind: 'sync.alarm',
    actor: o.popId,
    outcome: 'refused',
    reason: refused.code,
    data: { path: it.path, cause: e?.code ?? null },
  })
  return refused
}

export function isDiskFull(err: unknown): boolean {
  let e: unknown = err
  for (let i = 0; i < 5 && e; i++) {
    const code = (e as NodeJS.ErrnoException).code
    if (
      code === 'ENOSPC' ||
      code === 'SQLITE_FULL' ||
      /no space left on device/i.test((e as Error).message ?? '')
    )
      return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}

export function diskFull(err: unknown): ClavitorError {
  return claError(
    'CLA_ERR_SYNC_DISK_FULL',
    'no space left on the POP disk while sealing; free space, the next run resumes',
    { cause: err },
  )
}
