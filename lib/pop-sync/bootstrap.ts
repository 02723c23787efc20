// A new POP's first fill, the fastest honest way (docs/replication.md "Bootstrap"): instead
// of page by page, the whole core tree comes over with rsync in a few groups of shard
// folders (GROUPS) into one staging tree, while the whole feed is read in pages of FEED_MAX_LIMIT
// and each page is checked against its signed checkpoint (the chain recomputed from the
// genesis). As each group lands, its files are checked by their whole sha256 against the
// authenticated entries (while the next group still transfers); then the store takes the
// tree in bulk (lib/store/tree-ingest.ts: one syncfs, shard folders renamed into place,
// bulk sealing, one index pass with the cursor and its chain value set to the last entry
// of the verified prefix). What did not arrive or did not verify, and everything the core
// wrote meanwhile, is left to the page-by-page pull that follows in the same run.
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { FEED_MAX_LIMIT, type FeedItem, type FeedPage } from '../core-sync/feed.js'
import { claError, type ClavitorError } from '../errors.js'
import { CHAIN_GENESIS } from '../store/chain.js'
import type { Checkpoint } from '../store/checkpoint.js'
import { encodeCursor } from '../store/cursor.js'
import { SHARDS } from '../store/open.js'
import { removeStagingTree } from '../store/seal.js'
import type {
  TreeEntry,
  VerifiedTree,
  VerifyTreeOptions,
  VerifyTreeResult,
} from '../store/store.js'
import type { PopCursor } from './pop-cursor.js'
import { runRsync } from './rsync.js'
import { K_LAST_CHECK, setMeta } from './state.js'
import type { FeedClient } from './transport.js'

/** The store calls a bootstrap needs (BlobStore has them). */
export interface BootstrapStore {
  /** The store's root (to clear a staging tree that holds sealed files). */
  readonly root: string
  /** BlobStore.verifyTree. */
  verifyTree(
    dir: string,
    shards: readonly string[],
    entries: readonly TreeEntry[],
    opts?: VerifyTreeOptions,
  ): Promise<VerifyTreeResult>
  /** BlobStore.ingestTree. */
  ingestTree(
    groups: readonly VerifiedTree[],
    opts: { only?: readonly string[]; inTransaction?: (db: import('../db/open.js').Db) => void },
  ): Promise<unknown[]>
}

/** What a bootstrap needs: the pull's own options (lib/pop-sync/pull.ts PullOptions). */
export interface BootstrapOptions {
  /** The POP's store. */
  store: BootstrapStore
  /** The core's feed. */
  feed: FeedClient
  /** How rsync reaches the core (the pull's RsyncSettings, lib/pop-sync/pull.ts). */
  rsync: {
    /** `rsync://host:port/module/`, `user@host:/path/`, or a local folder. */
    source: string
    /** rsync --timeout / --contimeout, seconds. Default 30. */
    ioTimeoutSec?: number
    /** Extra rsync arguments (e.g. `--password-file`). */
    extraArgs?: readonly string[]
    /** Environment of the rsync process (e.g. RSYNC_PASSWORD). */
    env?: Record<string, string>
    /** rsync binary. Default 'rsync'. */
    rsyncPath?: string
  }
  /** The pull's staging folder (the tree goes in `tree/` under it). */
  stagingDir: string
  /** Stops the bootstrap with CLA_ERR_SYNC_ABORTED. */
  signal?: AbortSignal | undefined
}

/** What a bootstrap did. */
export interface BootstrapResult {
  /** Blobs verified, sealed and indexed in bulk. */
  sealed: number
  /** Feed pages read. */
  pages: number
  /** The core's head as of the last page. */
  head: FeedPage['head']
  /** Listed blobs left to the page-by-page pull (not arrived, refused, or after a gap). */
  left: number
  /**
   * Wall seconds from the start to the end of each step (they overlap): the whole feed read
   * and checked, the last rsync group landed, every group verified, the bulk ingest done.
   */
  timings: { feed_s: number; rsync_s: number; verified_s: number; ingested_s: number }
}

/**
 * Shard folders per rsync run: 8 runs of 32, so each group's checks overlap the next
 * group's transfer and the last group (whose checks cannot) is small.
 */
const GROUPS = 8

/**
 * Fills an empty POP from `first` (the feed's first page, already read) on. Page checks as
 * in pullOnce: `checkChain` throws CLA_ERR_SYNC_CHAIN / CLA_ERR_SYNC_CHECKPOINT (audited).
 */
export async function bootstrap(
  o: BootstrapOptions,
  cursor: PopCursor,
  first: FeedPage,
  checkChain: (
    page: FeedPage,
    start: string,
    reqPos: { created_at: number; seq: number } | null,
  ) => { chains: Map<string, string>; endChain: string; checkpoint: Checkpoint },
): Promise<BootstrapResult> {
  const t0 = performance.now()
  const at = () => (performance.now() - t0) / 1000
  const timings = { feed_s: 0, rsync_s: 0, verified_s: 0, ingested_s: 0 }
  const tree = join(o.stagingDir, 'tree')
  await rm(tree, { recursive: true, force: true })
  cursor.follow(first.store_id, first.generation)

  // the whole feed, each page authenticated as it arrives
  const items: FeedItem[] = []
  const chains = new Map<string, string>()
  let pages = 0
  let last: { page: FeedPage; checkpoint: Checkpoint } | null = null
  const feed = (async () => {
    let page = first
    let chain = CHAIN_GENESIS
    let pos: { created_at: number; seq: number } | null = null
    for (;;) {
      if (o.signal?.aborted) throw aborted()
      pages++
      if (page.store_id !== first.store_id || page.generation !== first.generation) {
        throw claError('CLA_ERR_SYNC_STORE_MISMATCH', 'the core changed store during the bootstrap')
      }
      const c = checkChain(page, chain, pos)
      for (const it of page.items) {
        items.push(it)
        chains.set(it.path, c.chains.get(it.path)!)
      }
      last = { page, checkpoint: c.checkpoint }
      chain = c.endChain
      if (!page.more || page.items.length === 0) return
      const end = page.items[page.items.length - 1]!
      pos = { created_at: end.created_at, seq: end.seq }
      page = await o.feed.page(encodeCursor(pos), FEED_MAX_LIMIT)
    }
  })()
  feed.then(() => (timings.feed_s = at())).catch(() => undefined) // awaited below

  // the tree, a group of shard folders at a time; each group verified as soon as it landed
  const verifications: Promise<VerifyTreeResult>[] = []
  let fetchError: ClavitorError | null = null
  let trustLists = true
  for (let g = 0; g < GROUPS; g++) {
    const shards = SHARDS.slice((g * SHARDS.length) / GROUPS, ((g + 1) * SHARDS.length) / GROUPS)
    const group = new Set(shards)
    // what rsync wrote, when it ran to its end: the strays are found in that list
    let written: string[] | undefined
    try {
      const r = await runRsync(
        {
          ...o.rsync,
          files: shards,
          listFile: join(o.stagingDir, `tree-${g}.list`),
          dest: tree,
          signal: o.signal,
          reportAll: true,
        },
        { partial: true },
      )
      // a line outside this group's shards (an rsync before 3.2.5, or --trust-sender, lets a
      // sender write there): that file could sit unlisted in a later group's folders, so no
      // list is trusted from now on and every later group reads its folders
      if (
        r.written?.some(
          (l) => !group.has(l.slice(0, l.indexOf('/') < 0 ? l.length : l.indexOf('/'))),
        )
      )
        trustLists = false
      if (r.exitCode === 0 && trustLists) written = r.written
    } catch (err) {
      const e = err as ClavitorError
      if (e.code === 'CLA_ERR_SYNC_ABORTED' || e.code === 'CLA_ERR_SYNC_DISK_FULL') {
        // the groups being checked and sealed finish first: nothing of this run goes on
        await Promise.allSettled(verifications)
        throw e
      }
      fetchError = e // what arrived is kept; the pull after fetches the rest page by page
    }
    verifications.push(
      feed.then(() =>
        o.store.verifyTree(
          tree,
          shards,
          items
            .filter((it) => group.has(it.path.slice(0, 2)))
            .map((it) => ({ path: it.path, file_sha256: it.file_sha256, expect: it })),
          written ? { written } : {},
        ),
      ),
    )
    if (fetchError) break
  }
  timings.rsync_s = at()
  await feed
  const results = await Promise.all(verifications)
  timings.verified_s = at()
  const ok = new Set<string>()
  for (const r of results) for (const p of r.verified.paths) ok.add(p)
  // the contiguous prefix of the log that is here and verified: the cursor's rule
  let n = 0
  while (n < items.length && ok.has(items[n]!.path)) n++
  const prefix = items.slice(0, n)
  if (prefix.length > 0) {
    const end = prefix[prefix.length - 1]!
    await o.store.ingestTree(
      results.map((r) => r.verified),
      {
        only: prefix.map((it) => it.path),
        inTransaction: (db) => {
          cursor.moveWithin(db, end, chains.get(end.path)!)
          // Every file taken was just checked (whole sha256 against the signed log) and
          // sealed: the next quick check reads only what changes from now on, not the whole
          // tree again (~10 s of CPU at 100,000). A change between a file's seal and now is
          // left to the daily full verify and the lookups' own hash check.
          setMeta(db, K_LAST_CHECK, String(Date.now()))
        },
      },
    )
    const done = last as { page: FeedPage; checkpoint: Checkpoint } | null
    if (done && n === items.length) cursor.setCheckpoint(done.checkpoint)
  }
  timings.ingested_s = at()
  // what is left was sealed in staging and not taken (nothing when the prefix is whole)
  await removeStagingTree(tree, o.store.root)
  return {
    timings,
    sealed: prefix.length,
    pages,
    head: (last as { page: FeedPage } | null)?.page.head ?? first.head,
    left: items.length - n,
  }
}

function aborted(): ClavitorError {
  return claError(
    'CLA_ERR_SYNC_ABORTED',
    'pull stopped by shutdown; the next run resumes from the cursor',
  )
}
