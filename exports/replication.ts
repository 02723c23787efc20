/**
 * Replication: the core's change feed and a POP's pull with rsync, verified against the
 * core's signed checkpoints of its replication log (docs/replication.md; the log's format
 * and vectors in docs/format.md). `openPop` (the root entry) wires these together; use them alone
 * to run a pull from your own scheduler or to serve the feed from your own HTTP app.
 * `PullLoop` runs a POP's hourly pull with the feed long-poll beside it (`pop run`);
 * `FeedWaiters` + `feedPageWaiting` serve the long-poll from your own app.
 *
 * @packageDocumentation
 */
export {
  FEED_DEFAULT_LIMIT,
  FEED_MAX_LIMIT,
  FEED_MAX_WAIT_S,
  feedHead,
  feedPage,
  feedPageWaiting,
  parseWait,
  type FeedItem,
  type FeedPage,
  type FeedQuery,
  type FeedSource,
} from '../lib/core-sync/feed.js'
export {
  FEED_MAX_WAITERS,
  FeedWaiters,
  type FeedWaitersOptions,
  type WaitEnd,
} from '../lib/core-sync/feed-wait.js'
export {
  WAKE_MIN_GAP_MS,
  WAKE_WAIT_S,
  WakeLoop,
  type WakeLoopOptions,
  type WakeStats,
} from '../lib/pop-sync/wake.js'
export { PullLoop, type PullLoopOptions } from '../lib/pop-sync/pull-loop.js'
export {
  CHAIN_GENESIS,
  chainNext,
  chainOver,
  fileSha256,
  type ChainEntry,
} from '../lib/store/chain.js'
export {
  CHECKPOINT_DOMAIN,
  checkpointBytes,
  checkpointHeader,
  parseCheckpointHeader,
  signCheckpoint,
  verifyCheckpoint,
  type Checkpoint,
  type CheckpointBody,
} from '../lib/store/checkpoint.js'
export {
  Checkpointer,
  type CheckpointerOptions,
  type CheckpointStore,
} from '../lib/core-sync/checkpointer.js'
export {
  checkPage,
  plainHttpFeedClient,
  requestFeedClient,
  type FeedClient,
  type JsonRequester,
} from '../lib/pop-sync/transport.js'
export {
  PopSync,
  type PopSyncOptions,
  type RunOptions,
  type RunOutcome,
  type RunTrigger,
} from '../lib/pop-sync/agent.js'
export {
  type BootstrapOptions,
  type BootstrapResult,
  type BootstrapStore,
} from '../lib/pop-sync/bootstrap.js'
export {
  pullOnce,
  type PullOptions,
  type PullProgress,
  type PullResult,
  type RsyncSettings,
} from '../lib/pop-sync/pull.js'
export {
  SyncScheduler,
  nextRegularRun,
  slotOffsetMs,
  type RunReason,
  type ScheduleOptions,
  type SchedulerOptions,
} from '../lib/pop-sync/scheduler.js'
export {
  Wl3Lookup,
  DEFAULT_CACHE_BYTES,
  type LookupCacheStats,
  type LookupOptions,
  type Wl3Answer,
} from '../lib/pop-sync/lookup.js'
export { listPopSyncStates, type PopReport, type PopSyncRow } from '../lib/core-sync/pop-state.js'
export type { FeedRow } from '../lib/store/blob-index.js'
export type { LastRun } from '../lib/pop-sync/state.js'
export type { PopListing } from '../lib/core-sync/pop-state.js'
export type { PullStore } from '../lib/pop-sync/pull.js'
export type { RepairResult } from '../lib/pop-sync/repair.js'
export type { IngestExpect } from '../lib/pop-sync/pull.js'
