// The hand-over between the two halves of a pull (lib/pop-sync/pull.ts): a producer stages
// pages ahead (feed page, rsync into a folder of its own, verification started) while the
// consumer seals and indexes the page before. Nothing staged is visible until sealed.
import type { ClavitorError } from '../errors.js'
import type { VerifyStagedResult } from '../store/store.js'
import type { FeedItem, FeedPage } from '../core-sync/feed.js'
import type { Checkpoint } from '../store/checkpoint.js'

/** One page made ready to seal. */
export interface Staged {
  page: FeedPage
  /** Identity alarm: the page must not be used; re-baseline first. */
  alarm: ClavitorError | null
  items: FeedItem[]
  held: Set<string>
  runDir: string
  fetchError: ClavitorError | null
  /** The contiguous prefix of the page that is held or fully staged: only it may move the cursor. */
  prefix: FeedItem[]
  /** The first listed blob that did not arrive (the cursor stays before it). */
  missing: FeedItem | undefined
  /** Verification of the prefix's staged files, started as soon as rsync finished. */
  verification: Promise<VerifyStagedResult> | null
  /** The replication log's chain value after each listed item, by path (verified against the page's checkpoint). */
  chains: Map<string, string>
  /** The chain value at the page's end (the next page starts from it). */
  endChain: string
  /** The page's checkpoint, verified: it covers the page's last item (or the cursor when empty). */
  checkpoint: Checkpoint | null
}

/** Pages staged ahead of the one being sealed: rsync of N+2 ‖ verify of N+1 ‖ seal of N. */
export const AHEAD = 2

/**
 * A bounded, ordered hand-over from the page producer (feed, rsync, verification) to the
 * sealing loop. The producer waits while AHEAD pages wait; a producer failure reaches the
 * consumer after the pages produced before it.
 */
export class PageQueue {
  private readonly buf: Staged[] = []
  private failure: { err: unknown } | null = null
  private done = false
  private wakeConsumer: (() => void) | null = null
  private wakeProducer: (() => void) | null = null

  async push(st: Staged, signal: AbortSignal): Promise<void> {
    while (this.buf.length >= AHEAD && !signal.aborted)
      await new Promise<void>((r) => {
        const wake = () => {
          signal.removeEventListener('abort', wake)
          this.wakeProducer = null
          r()
        }
        this.wakeProducer = wake
        signal.addEventListener('abort', wake, { once: true })
      })
    this.buf.push(st)
    this.wakeConsumer?.()
  }

  end(err?: unknown): void {
    if (err !== undefined) this.failure = { err }
    this.done = true
    this.wakeConsumer?.()
  }

  /** The next page, or null when the producer finished without another. */
  async shift(): Promise<Staged | null> {
    for (;;) {
      const st = this.buf.shift()
      if (st) {
        this.wakeProducer?.()
        return st
      }
      if (this.failure) throw this.failure.err
      if (this.done) return null
      await new Promise<void>((r) => (this.wakeConsumer = r))
    }
  }

  /** Pages staged but never consumed (their verification may still be running). */
  drain(): Staged[] {
    return this.buf.splice(0)
  }
}
