// One sync run of a POP, end to end: check its own blobs (quick stat check, or a full
// verify when due or asked), repair what is damaged, pull until caught up, record the
// outcome, report cursor/lag/last error to the core. The scheduler and `pop sync --once`
// both call PopSync.run().
import { appendEvent, type AuditEventInput } from '../audit/log.js'
import { nowMicros } from '../db/open.js'
import { claError, isClavitorError, type ClavitorError } from '../errors.js'
import type { Logger } from '../log.js'
import { silentLogger } from '../log.js'
import type { BlobStore } from '../store/index.js'
import { pullOnce, type PullProgress, type PullResult, type RsyncSettings } from './pull.js'
import {
  fullVerify,
  K_LAST_CHECK,
  pendingRepairs,
  quickCheck,
  repairQueued,
  type RepairResult,
} from './repair.js'
import {
  getLastRun,
  getMeta,
  K_CURSOR,
  K_STORE_ID,
  setLastRun,
  setMeta,
  type LastRun,
} from './state.js'
import type { FeedClient } from './transport.js'

const K_LAST_VERIFY = 'sync.last_full_verify'

/** What a {@link PopSync} works with: the POP's store, the core's feed, rsync settings. */
export interface PopSyncOptions {
  /** This POP's id (the audit actor). */
  popId: string
  /** The POP's store (role 'pop'); its database holds the sync state too. */
  store: BlobStore
  /** The core's feed and report API. */
  feed: FeedClient
  /** How to fetch blobs from the core. */
  rsync: RsyncSettings
  /** Plain folder on the store's filesystem ({data}/sync-staging). */
  stagingDir: string
  /** Feed page size. Default 1000. */
  pageSize?: number
  /** A full verify of every held blob at most this often, ms. Default 86,400,000 (daily). 0 = every run. */
  fullVerifyEveryMs?: number
  /** Default: a silent logger. */
  log?: Logger
  /** Told which paths the agent is about to write (the tree watcher ignores them)... */
  onAgentWrite?: (paths: readonly string[]) => void
  /**
   * True while a tree watcher runs (live watches on the root and shard folders, and a sweep
   * of the whole tree every few minutes: lib/pop-sync/watch.ts): runs after the first then
   * skip their own quick check; the first run still does it (changes made while nothing
   * watched), and the full verify keeps its cadence.
   */
  watching?: () => boolean
  /** ...and when that write is over (the watcher stops ignoring them shortly after). */
  onAgentWriteDone?: (paths: readonly string[]) => void
  /** Called after each run is recorded (metrics); must not throw. */
  onRun?: (run: {
    ok: boolean
    code: string | null
    sealed: number
    /** What started the run (RunOptions.trigger). */
    trigger: RunTrigger
  }) => void
}

/** Options of one {@link PopSync.run}. */
export interface RunOptions {
  /** Stops the run; the next run resumes from the cursor. */
  signal?: AbortSignal
  /** Called after each feed page is sealed or found held. */
  onProgress?: (p: PullProgress) => void
  /** Force a full verify of every held blob before pulling. */
  verify?: boolean
  /**
   * Check the local tree first (quick or full, by cadence). Default true; false for a wake
   * run (the feed long-poll): a pull of what is new, within seconds of its commit, without a
   * stat of every held blob; the regular runs keep checking.
   */
  check?: boolean
  /**
   * What started the run, for metrics and logs: 'regular' (the hourly slot or a retry),
   * 'wake' (the feed long-poll), 'manual' (SIGUSR2, `pop sync --once`, an embedder). Default
   * 'manual'.
   */
  trigger?: RunTrigger
}

/** What starts a sync run. */
export type RunTrigger = 'regular' | 'wake' | 'manual'

/** What a successful sync run did: the pull's result plus the check and repair before it. */
export interface RunOutcome extends PullResult {
  /** Queued repairs this run attempted. */
  repair: RepairResult
  /**
   * Damaged blobs found by this run's check ('watch': skipped, the live watcher covers it;
   * 'none': a wake run, the regular runs check).
   */
  checked: { mode: 'quick' | 'full' | 'watch' | 'none'; bad: number }
  /** Set when the report to the core failed (the run itself succeeded). */
  report_error: string | null
}

/**
 * One POP's sync runs (check, repair, pull, record, report to the core); used by the
 * scheduler and `pop sync --once`.
 */
export class PopSync {
  /** The options it was made with. */
  readonly opts: PopSyncOptions
  private readonly log: Logger
  private inFlight: Promise<RunOutcome> | null = null
  /** Runs that got past the local check (successful or not). */
  private checkedRuns = 0

  constructor(opts: PopSyncOptions) {
    this.opts = opts
    this.log = opts.log ?? silentLogger()
  }

  /** True while a run is in flight. */
  get running(): boolean {
    return this.inFlight !== null
  }

  /** Audit + alarm log line; an audit failure is itself logged loudly (never swallowed silently). */
  audit(ev: AuditEventInput): void {
    try {
      appendEvent(this.opts.store.db, ev)
    } catch (err) {
      this.log.error({ err, ev }, 'audit log write failed')
      throw err
    }
  }

  /** This POP's cursor in the core's feed (null before its first page). */
  cursor(): string | null {
    return getMeta(this.opts.store.db, K_CURSOR)
  }

  /**
   * The sync state kept in the POP's database: cursor, the core store id, the last run, pending
   * repairs, and whether a run is in flight.
   */
  status() {
    const db = this.opts.store.db
    return {
      cursor: getMeta(db, K_CURSOR),
      core_store_id: getMeta(db, K_STORE_ID),
      last_run: getLastRun(db),
      repairs_pending: Object.keys(pendingRepairs(db)).length,
      running: this.running,
    }
  }

  /**
   * One run; joins a run in flight. Rejects (after recording and reporting) on failure; an
   * abort (the signal: a shutdown) rejects with CLA_ERR_SYNC_ABORTED wherever it lands (the
   * check, the repair, the pull) and is neither recorded nor reported as a failed run.
   */
  run(opts: RunOptions = {}): Promise<RunOutcome> {
    if (this.inFlight) return this.inFlight
    const p = this.runInner(opts).finally(() => {
      this.inFlight = null
    })
    this.inFlight = p
    return p
  }

  private async runInner(opts: RunOptions): Promise<RunOutcome> {
    const o = this.opts
    const db = o.store.db
    const started = Date.now()
    let checked: RunOutcome['checked'] = { mode: 'quick', bad: 0 }
    let repair: RepairResult = { repaired: [], intact: [], failed: [] }
    const warn = (msg: string, data?: Record<string, unknown>) =>
      this.log.error({ ...data, alarm: true }, msg)
    const audit = (ev: AuditEventInput) => this.audit(ev)
    try {
      const every = o.fullVerifyEveryMs ?? 86_400_000
      const last = Number(getMeta(db, K_LAST_VERIFY) ?? 0)
      if (opts.check === false && !opts.verify) {
        checked = { mode: 'none', bad: 0 }
      } else if (opts.verify || every === 0 || started - last >= every) {
        const bad = await fullVerify(o.store)
        setMeta(db, K_LAST_VERIFY, String(started))
        setMeta(db, K_LAST_CHECK, String(started)) // every file was just read
        checked = { mode: 'full', bad: bad.length }
      } else if (this.checkedRuns > 0 && o.watching?.()) {
        checked = { mode: 'watch', bad: 0 }
      } else {
        const q = await quickCheck(o.store, opts.signal ? { signal: opts.signal } : {})
        checked = { mode: 'quick', bad: q.bad.length }
        if (q.foreign.length > 0) {
          warn(`${q.foreign.length} entr(ies) in the sealed tree were not written by the agent`, {
            foreign: q.foreign.slice(0, 20),
          })
          audit({
            kind: 'sync.alarm',
            actor: o.popId,
            outcome: 'alarm',
            reason: 'tree_foreign',
            data: { count: q.foreign.length, paths: q.foreign.slice(0, 20).map((f) => f.path) },
          })
        }
      }
      if (checked.mode !== 'none') this.checkedRuns++
      if (checked.bad > 0) {
        warn(`${checked.bad} blob(s) on this POP are missing or damaged; repairing from the core`, {
          mode: checked.mode,
        })
        audit({
          kind: 'sync.alarm',
          actor: o.popId,
          outcome: 'alarm',
          reason: 'store_damaged',
          data: { bad: checked.bad, mode: checked.mode },
        })
      }
      const queued = Object.keys(pendingRepairs(db))
      if (queued.length) o.onAgentWrite?.(queued)
      try {
        repair = await repairQueued({
          popId: o.popId,
          store: o.store,
          rsync: o.rsync,
          stagingDir: o.stagingDir,
          audit,
          warn,
          ...(opts.signal ? { signal: opts.signal } : {}),
        })
      } finally {
        // the watcher stops ignoring these paths even when the repair threw (the error
        // goes on to the catch below: logged, recorded, reported)
        if (queued.length) o.onAgentWriteDone?.(queued)
      }
      const res = await pullOnce({
        popId: o.popId,
        db,
        store: {
          root: o.store.root,
          trustedKeys: o.store.trustedKeys,
          verifyStaged: (staged) => o.store.verifyStaged(staged),
          verifyTree: (dir, shards, entries, vo) => o.store.verifyTree(dir, shards, entries, vo),
          ingestTree: async (groups, io) => {
            const paths = io.only ?? groups.flatMap((g) => g.paths)
            o.onAgentWrite?.(paths)
            try {
              return await o.store.ingestTree(groups, io)
            } finally {
              o.onAgentWriteDone?.(paths)
            }
          },
          ingest: async (staged, io) => {
            const paths = Array.isArray(staged)
              ? staged.map((s) => s.expect?.path ?? s.file)
              : staged.paths
            o.onAgentWrite?.(paths)
            try {
              return await o.store.ingest(staged, io)
            } finally {
              o.onAgentWriteDone?.(paths)
            }
          },
        },
        feed: o.feed,
        rsync: o.rsync,
        stagingDir: o.stagingDir,
        audit,
        warn,
        ...(o.pageSize ? { pageSize: o.pageSize } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(opts.onProgress ? { onProgress: opts.onProgress } : {}),
      })
      if (repair.failed.length > 0) {
        throw claError(
          'CLA_ERR_SYNC_PARTIAL',
          `${repair.failed.length} damaged blob(s) could not be repaired from the core yet: ${repair.failed[0]!.path}: ${repair.failed[0]!.message}`,
          {
            details: { failed: repair.failed.slice(0, 20) },
          },
        )
      }
      const alarm = res.alarms[0]
      const outcome: RunOutcome = { ...res, repair, checked, report_error: null }
      this.record({
        ok: true,
        error: alarm ? { code: alarm.code, message: alarm.message } : null,
        res,
        alarms: res.alarms,
        trigger: opts.trigger ?? 'manual',
      })
      outcome.report_error = await this.report(true, alarm ?? null)
      this.log.info(
        {
          sealed: res.sealed,
          already: res.already,
          pages: res.pages,
          lag_us: res.lag_us,
          repaired: repair.repaired.length,
          ms: Date.now() - started,
        },
        'sync run done',
      )
      return outcome
    } catch (err) {
      const e: ClavitorError = isClavitorError(err)
        ? err
        : opts.signal?.aborted && (err as Error)?.name === 'AbortError'
          ? claError('CLA_ERR_SYNC_ABORTED', 'sync run stopped by shutdown', { cause: err })
          : claError('CLA_ERR_INTERNAL', (err as Error).message, { cause: err })
      if (e.code === 'CLA_ERR_SYNC_ABORTED') {
        // A shutdown is not a failure: the last run, the failure metric and the core's view
        // stay as they were; the next run resumes from the cursor (and checks again).
        this.log.info({ code: e.code }, 'sync run stopped by shutdown')
        throw e
      }
      this.log.error({ err: e, code: e.code, details: e.details }, 'sync run failed')
      try {
        this.record({
          ok: false,
          error: { code: e.code, message: e.message },
          res: null,
          alarms: [],
          trigger: opts.trigger ?? 'manual',
        })
      } catch (recErr) {
        this.log.error({ err: recErr }, 'cannot record the failed run')
      }
      await this.report(false, e)
      throw e
    }
  }

  private record(r: {
    ok: boolean
    error: { code: string; message: string } | null
    res: PullResult | null
    alarms: ClavitorError[]
    trigger: RunTrigger
  }): void {
    const db = this.opts.store.db
    const prev = getLastRun(db)
    const run: LastRun = {
      at: nowMicros(),
      ok: r.ok,
      error: r.error,
      lag_us: r.res?.lag_us ?? prev?.lag_us ?? null,
      sealed: r.res?.sealed ?? 0,
      already: r.res?.already ?? 0,
      alarms: r.alarms.map((a) => ({ code: a.code, message: a.message })),
    }
    db.transaction(() => setLastRun(db, run)).immediate()
    this.opts.onRun?.({
      ok: r.ok,
      code: r.error?.code ?? null,
      sealed: run.sealed,
      trigger: r.trigger,
    })
  }

  /** Reports to the core; returns the report's own error text (never throws). */
  private async report(ok: boolean, err: ClavitorError | null): Promise<string | null> {
    const db = this.opts.store.db
    try {
      const blobs = this.opts.store.index.count()
      await this.opts.feed.report({
        cursor: getMeta(db, K_CURSOR),
        ok,
        error: err ? { code: err.code, message: err.message } : null,
        blobs,
      })
      return null
    } catch (rerr) {
      const msg = (rerr as Error).message
      this.log.warn({ err: rerr }, 'report to the core failed; it is sent again after the next run')
      return msg
    }
  }
}
