// Keeps `blobs.chain` (lib/store/chain.ts) true as rows are added or forgotten: the writers
// extend the chain from the newest published row inside their transaction (ChainTail); a
// recovery that indexes older files, a forget that deletes rows, or rows older than the
// chain itself (schema migration 9) recompute it from the first place it changed
// (rechainFrom, fillChain). Only this file and lib/store/batch.ts write the column.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { compareCursor, type CursorPos } from './cursor.js'
import type { BlobInfo } from './blob-index.js'
import { CHAIN_GENESIS, chainNext, fileSha256 } from './chain.js'
import { stmt, type StoreContext } from './context.js'
import { mapLimit } from './durable.js'

/** The newest published row's position and chain value, read once per transaction. */
export class ChainTail {
  private pos: CursorPos | null
  private chain: string | null
  /** Set when a row could not be chained in place (older than the tail, or no tail value). */
  broken = false

  constructor(ctx: StoreContext) {
    const r = stmt(
      ctx,
      'SELECT created_at, seq, chain FROM blobs WHERE published = 1 ORDER BY created_at DESC, seq DESC LIMIT 1',
    ).get() as { created_at: number; seq: number; chain: string | null } | undefined
    this.pos = r ? { created_at: r.created_at, seq: r.seq } : null
    this.chain = r ? r.chain : CHAIN_GENESIS
  }

  /** The chain value of a published row appended after the tail; null when it cannot be. */
  extend(info: BlobInfo): string | null {
    if (this.chain === null || !info.file_sha256 || compareCursor(info, this.pos) <= 0) {
      this.broken = true
      return null
    }
    this.chain = chainNext(this.chain, info)
    this.pos = { created_at: info.created_at, seq: info.seq }
    return this.chain
  }

  /** The tail as it is now, to go back to when an appended row is withdrawn. */
  save(): { pos: CursorPos | null; chain: string | null } {
    return { pos: this.pos, chain: this.chain }
  }

  /** Back to a saved tail (the row appended since was not published). */
  restore(s: { pos: CursorPos | null; chain: string | null }): void {
    this.pos = s.pos
    this.chain = s.chain
  }
}

const PAGE = 10_000

/**
 * Recomputes the chain of every published row from `from` on (null: from the first), inside
 * the caller's transaction. Stops at the first row with no file_sha256 (left NULL from there,
 * for fillFileHashes). Returns the rows rewritten.
 */
export function rechainFrom(ctx: StoreContext, from: CursorPos | null): number {
  const prevRow = from
    ? (stmt(
        ctx,
        'SELECT chain FROM blobs WHERE published = 1 AND (created_at, seq) < (?, ?) ORDER BY created_at DESC, seq DESC LIMIT 1',
      ).get(from.created_at, from.seq) as { chain: string | null } | undefined)
    : undefined
  let chain: string | null = prevRow ? prevRow.chain : CHAIN_GENESIS
  if (chain === null) return 0 // an earlier row lacks its value: fillChain starts there
  const page = stmt(
    ctx,
    'SELECT seq, created_at, path, file_sha256 FROM blobs WHERE published = 1 AND (created_at, seq) >= (?, ?) ORDER BY created_at, seq LIMIT ?',
  )
  const set = stmt(ctx, 'UPDATE blobs SET chain = ? WHERE seq = ?')
  let at: CursorPos = from ?? { created_at: -1, seq: -1 }
  let n = 0
  for (;;) {
    const rows = page.all(at.created_at, at.seq, PAGE) as Array<
      Omit<BlobInfo, 'p0' | 'size' | 'file_size' | 'sha256' | 'key_id'>
    >
    for (const r of rows) {
      if (!r.file_sha256) {
        stmt(
          ctx,
          'UPDATE blobs SET chain = NULL WHERE published = 1 AND (created_at, seq) >= (?, ?)',
        ).run(r.created_at, r.seq)
        return n
      }
      chain = chainNext(chain, r)
      set.run(chain, r.seq)
      n++
    }
    if (rows.length < PAGE) return n
    const last = rows[rows.length - 1]!
    at = { created_at: last.created_at, seq: last.seq + 1 }
  }
}

/** Recomputes the chain from the first published row that lacks it; 0 when none does. */
export function fillChain(ctx: StoreContext): number {
  const first = stmt(
    ctx,
    'SELECT created_at, seq FROM blobs WHERE published = 1 AND chain IS NULL ORDER BY created_at, seq LIMIT 1',
  ).get() as CursorPos | undefined
  return first ? rechainFrom(ctx, first) : 0
}

/** Whether any row still lacks its file hash or chain value (the partial index blobs_unchained). */
export function needsFill(ctx: StoreContext): boolean {
  return (
    stmt(
      ctx,
      'SELECT 1 FROM blobs WHERE file_sha256 IS NULL OR (published = 1 AND chain IS NULL) LIMIT 1',
    ).get() !== undefined
  )
}

/**
 * Rows indexed before the replication log (schema migration 9) have no file_sha256: reads
 * their files and fills it, then the chain. A file that cannot be read keeps NULL (the chain
 * stops before it; `store verify` names it missing). Returns the rows filled.
 */
export async function fillFileHashes(ctx: StoreContext): Promise<number> {
  const rows = stmt(ctx, 'SELECT seq, path FROM blobs WHERE file_sha256 IS NULL').all() as Array<{
    seq: number
    path: string
  }>
  const set = stmt(ctx, 'UPDATE blobs SET file_sha256 = ? WHERE seq = ? AND file_sha256 IS NULL')
  let n = 0
  for (let i = 0; i < rows.length; i += PAGE) {
    const part = rows.slice(i, i + PAGE)
    const hashes = await mapLimit(part, 16, async (r) => {
      try {
        return fileSha256(await readFile(join(ctx.root, r.path)))
      } catch {
        return null
      }
    })
    ctx.db.transaction(() => {
      part.forEach((r, j) => {
        if (hashes[j]) n += set.run(hashes[j], r.seq).changes
      })
    })()
  }
  ctx.db.transaction(() => fillChain(ctx)).immediate()
  return n
}
