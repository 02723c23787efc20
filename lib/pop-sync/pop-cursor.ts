// Where a POP stands in the core's feed, and which core store (and generation) it follows:
// the only writer of those meta keys (named in lib/pop-sync/state.ts). The cursor moves in the
// same SQLite transaction as the index rows of the blobs it covers (moveWithin), so it
// never passes a blob that is not sealed here; a re-baseline sends it back to the start.
import type { Db } from '../db/open.js'
import { claError, type ClavitorError } from '../errors.js'
import type { FeedPage } from '../core-sync/feed.js'
import { compareCursor, decodeCursor, encodeCursor, type CursorPos } from '../store/cursor.js'
import { blobIndex } from '../store/blob-index.js'
import { CHAIN_GENESIS } from '../store/chain.js'
import type { Checkpoint } from '../store/checkpoint.js'
import {
  getMeta,
  K_CHAIN,
  K_CHECKPOINT,
  K_CURSOR,
  K_GENERATION,
  K_STORE_ID,
  setMeta,
} from './state.js'

export class PopCursor {
  constructor(private readonly db: Db) {}

  /** The cursor token (`c1.{created_at}.{seq}`), null before the first blob. */
  token(): string | null {
    return getMeta(this.db, K_CURSOR)
  }

  position(): CursorPos | null {
    return decodeCursor(this.token())
  }

  /** The core store this POP follows (null until the first page). */
  core(): { storeId: string | null; generation: number | null } {
    const gen = getMeta(this.db, K_GENERATION)
    return { storeId: getMeta(this.db, K_STORE_ID), generation: gen === null ? null : Number(gen) }
  }

  /**
   * The replication log's chain value at the cursor, as verified against the core's
   * checkpoints: the genesis before the first blob; for a cursor older than the chain
   * (recorded before schema migration 9), the index's own value at that blob.
   */
  chain(): string | null {
    const pos = this.position()
    if (!pos) return CHAIN_GENESIS
    return getMeta(this.db, K_CHAIN) ?? blobIndex(this.db).chainAt(pos.seq)
  }

  /** The newest core checkpoint verified at this POP's cursor, or null. */
  checkpoint(): Checkpoint | null {
    const v = getMeta(this.db, K_CHECKPOINT)
    return v ? (JSON.parse(v) as Checkpoint) : null
  }

  /**
   * Records `cp`, verified and covering the cursor, as this POP's freshness, unless the one
   * held is newer: a replayed old page never makes the POP look fresher than it was.
   */
  setCheckpoint(cp: Checkpoint): void {
    this.db
      .transaction(() => {
        const held = this.checkpoint()
        if (held && held.seq === cp.seq && held.time >= cp.time) return
        setMeta(this.db, K_CHECKPOINT, JSON.stringify(cp))
      })
      .immediate()
  }

  /** Moves the cursor (and its chain value) to `pos` in a transaction of its own (blobs already held here). */
  moveTo(pos: CursorPos, chain: string): void {
    const tok = encodeCursor(pos)
    if (this.token() === tok && getMeta(this.db, K_CHAIN) === chain) return
    this.db.transaction(() => this.moveWithin(this.db, pos, chain)).immediate()
  }

  /** Moves the cursor inside the caller's transaction: the one indexing what it covers. */
  moveWithin(db: Db, pos: CursorPos, chain: string): void {
    setMeta(db, K_CURSOR, encodeCursor(pos))
    setMeta(db, K_CHAIN, chain)
  }

  /** Back to the start, following `storeId` at `generation` from now on. */
  rebaseline(storeId: string, generation: number): void {
    this.db
      .transaction(() => {
        setMeta(this.db, K_CURSOR, null)
        setMeta(this.db, K_CHAIN, null)
        setMeta(this.db, K_CHECKPOINT, null)
        this.record(storeId, generation)
      })
      .immediate()
  }

  /** Records the core store followed, the first time one is seen. */
  follow(storeId: string, generation: number): void {
    if (this.core().storeId !== null) return
    this.db.transaction(() => this.record(storeId, generation)).immediate()
  }

  private record(storeId: string, generation: number): void {
    setMeta(this.db, K_STORE_ID, storeId)
    setMeta(this.db, K_GENERATION, String(generation))
  }
}

/**
 * Identity and generation check. Returns an alarm when the POP must re-baseline: its
 * recorded store differs, or its cursor is ahead of the core's newest blob (restored core).
 * Re-baselining = cursor back to the start; every listed blob this POP already holds must
 * then match exactly (path, seq, sha256) and is counted without a fetch; anything else is a
 * conflict. Nothing is skipped silently and no two stores are mixed (blobs signed by
 * another core's key do not verify here).
 */
export function identityCheck(page: FeedPage, pop: PopCursor): ClavitorError | null {
  const cursor = pop.position()
  const { storeId, generation: gen } = pop.core()
  if (storeId !== null && storeId !== page.store_id) {
    return claError(
      'CLA_ERR_SYNC_STORE_MISMATCH',
      `the core now serves store ${page.store_id} but this POP replicated store ${storeId}; re-baselining from the start`,
      { details: { recorded: storeId, core: page.store_id } },
    )
  }
  if (gen !== null && gen !== page.generation) {
    return claError(
      'CLA_ERR_SYNC_STORE_MISMATCH',
      `the core's store generation changed from ${gen} to ${page.generation} (restored or rebuilt); re-baselining from the start`,
      { details: { recorded_generation: gen, core_generation: page.generation } },
    )
  }
  // Only the cursor counts: after a re-baseline it sits at the core's head even when
  // this POP still holds (valid, signed) blobs the restored core lost.
  const ahead = cursor !== null && compareCursor(cursor, page.head) > 0 ? cursor : null
  if (ahead) {
    return claError(
      'CLA_ERR_SYNC_CURSOR_AHEAD',
      `this POP holds blobs up to ${encodeCursor(ahead)} but the core's newest is ${page.head ? encodeCursor(page.head) : 'none'} (core restored from a backup?); re-baselining from the start`,
      {
        details: {
          pop: encodeCursor(ahead),
          core_head: page.head ? encodeCursor(page.head) : null,
        },
      },
    )
  }
  return null
}
