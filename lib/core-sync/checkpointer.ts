// The core's signer of replication-log checkpoints (lib/store/checkpoint.ts): one for the
// last item of every feed page, and one for the head that stays fresh while the core is
// idle (a timer re-signs it every `refreshMs`), so a caught-up POP always receives a recent
// time from the core and can show vaults how fresh it is. Signing costs ~50 µs; the head's
// is shared by every POP polling within the refresh window.
import { systemClock, type Clock } from '../clock.js'
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import { blobIndex } from '../store/blob-index.js'
import { CHAIN_GENESIS } from '../store/chain.js'
import {
  CHECKPOINT_DOMAIN,
  checkpointBytes,
  type Checkpoint,
  type CheckpointBody,
} from '../store/checkpoint.js'
import type { CursorPos } from '../store/cursor.js'

/** The core store a checkpointer signs for (a BlobStore of role core satisfies it). */
export interface CheckpointStore {
  /** The database holding the store's index. */
  readonly db: Db
  /** The store's id. */
  readonly storeId: string
  /** The store's generation. */
  readonly generation: number
  /** Signs `domain + body` with the store's key (BlobStore.signStatement). */
  signStatement(domain: string, body: Buffer): { keyId: string; signature: Buffer }
}

/** Options of a {@link Checkpointer}. */
export interface CheckpointerOptions {
  /** Time source. Default the system clock. */
  clock?: Clock
  /** The head's checkpoint is re-signed when older than this, and on this timer. Default 30 s. */
  refreshMs?: number
}

/** Signs checkpoints of the core's replication log; see the file comment. */
export class Checkpointer {
  private readonly clock: Clock
  private readonly refreshMs: number
  private cached: Checkpoint | null = null
  private timer: unknown = null

  constructor(
    private readonly store: CheckpointStore,
    opts: CheckpointerOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock
    this.refreshMs = opts.refreshMs ?? 30_000
    if (!Number.isInteger(this.refreshMs) || this.refreshMs < 1000) {
      throw claError('CLA_ERR_INVALID_OPTION', 'refreshMs must be an integer of at least 1000')
    }
  }

  /**
   * The checkpoint covering `pos` (a published blob; null: the empty log), signed now, or
   * the cached one when it covers the same position and is younger than `refreshMs`.
   * Throws CLA_ERR_INTERNAL when the index lacks that blob's chain value.
   */
  at(pos: CursorPos | null): Checkpoint {
    const now = this.clock.now()
    const c = this.cached
    if (
      c &&
      c.seq === (pos?.seq ?? 0) &&
      c.created_at === (pos?.created_at ?? 0) &&
      now * 1000 - c.time < this.refreshMs * 1000
    )
      return c
    const chain = pos ? blobIndex(this.store.db).chainAt(pos.seq) : CHAIN_GENESIS
    if (chain === null) {
      throw claError(
        'CLA_ERR_INTERNAL',
        `blob seq ${pos!.seq} has no chain value; reopen the store to fill it`,
      )
    }
    const body: CheckpointBody = {
      store_id: this.store.storeId,
      generation: this.store.generation,
      seq: pos?.seq ?? 0,
      created_at: pos?.created_at ?? 0,
      chain,
      time: now * 1000,
    }
    const sig = this.store.signStatement(CHECKPOINT_DOMAIN, checkpointBytes(body))
    const cp: Checkpoint = {
      ...body,
      key_id: sig.keyId,
      signature: sig.signature.toString('base64'),
    }
    this.cached = cp
    return cp
  }

  /** The checkpoint of the newest published blob (fresh within `refreshMs`). */
  head(): Checkpoint {
    return this.at(blobIndex(this.store.db).head())
  }

  /** Re-signs the head every `refreshMs` while idle (until stop()). */
  start(): void {
    if (this.timer !== null) return
    const tick = () => {
      try {
        this.head()
      } catch {
        // a store being closed: the next feed request signs on demand
      }
      this.timer = this.clock.setTimeout(tick, this.refreshMs)
    }
    this.timer = this.clock.setTimeout(tick, this.refreshMs)
  }

  /** Stops the timer. */
  stop(): void {
    if (this.timer !== null) this.clock.clearTimeout(this.timer)
    this.timer = null
  }
}
