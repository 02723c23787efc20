// Watches a POP's sealed tree in bounded memory. A change the agent did not announce is an
// alarm: logged, audited (kind sync.alarm), and — for an indexed blob that went missing
// or no longer verifies — queued for repair, so the next pull puts it back from the core.
//
// Two parts, because a watch per folder does not scale (chokidar cost ~22 KB of RSS per p0
// folder: 385 MB at 10,000 P0s, nearly 2 GB at 59,000; and inotify limits the number of
// watches per user):
// - live: one inotify watch (fs.watch) on the store root and one on each of the 256 shard
//   folders, 257 in all at any size. A p0 folder made or removed, or anything foreign at
//   those two levels, is judged within the settle delay.
// - sweep: every sweepMs, lib/pop-sync/tree-check.ts stats each indexed file and p0 folder
//   page by page and reads only what changed since the previous sweep (a sealed file cannot
//   change without its ctime changing). Inside p0 folders changes are found at the next
//   sweep instead of at once.
// Paths the agent announced (expect/done) are not judged while it writes them.
import { existsSync, watch, type FSWatcher } from 'node:fs'
import { join } from 'node:path'
import type { AuditEventInput } from '../audit/log.js'
import type { BlobStore } from '../store/index.js'
import { pendingRepairs, queueRepair } from './repair.js'
import { checkTree, type TreeCheckResult } from './tree-check.js'

/** A change to the sealed tree the agent did not announce (logged, audited as sync.alarm). */
export interface TreeAlarm {
  /** The live watch event that showed it, or 'sweep' when the periodic tree check found it. */
  event: 'add' | 'change' | 'unlink' | 'addDir' | 'unlinkDir' | 'sweep'
  /** Path relative to the store root. */
  path: string
  /**
   * damaged/removed: an indexed blob (queued for repair). foreign_*: an entry the store did not
   * write. dir_removed: a shard folder, or a p0 folder holding indexed blobs, went away.
   */
  reason: 'damaged' | 'removed' | 'foreign_file' | 'foreign_dir' | 'dir_removed'
}

export interface TreeWatchOptions {
  popId: string
  store: BlobStore
  /** Audit sink (appendEvent on the POP's db). */
  audit: (ev: AuditEventInput) => void
  /** Alarm log line. */
  onAlarm?: (a: TreeAlarm) => void
  /** How long an announced path is expected to change, ms. Default 120,000. */
  expectMs?: number
  /** Delay before a live event is judged (the agent indexes right after linking), ms. Default 2000. */
  settleMs?: number
  /** Time between sweeps of the whole tree, ms. Default 600,000 (10 minutes); 0: no timer. */
  sweepMs?: number
  /** Index rows per sweep page (memory bound). Default 2000. */
  sweepPageSize?: number
  /**
   * How many of the latest alarms and judged paths {@link TreeWatch.alarms} and
   * {@link TreeWatch.judged} keep (older ones are dropped: every alarm is also logged and
   * audited). Default 1000.
   */
  keepRecent?: number
}

const SHARDS = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'))

/**
 * Watches a POP's sealed tree: live inotify watches on the root and the 256 shard folders, plus
 * a periodic sweep (tree-check.ts). Unannounced changes become {@link TreeAlarm}s.
 */
export class TreeWatch {
  private readonly o: TreeWatchOptions
  private watchers: FSWatcher[] = []
  private readonly expected = new Map<string, number>()
  private readonly timers = new Set<NodeJS.Timeout>()
  private sweepTimer: NodeJS.Timeout | null = null
  private sweeping: Promise<TreeCheckResult> | null = null
  private lastSweepStart = 0
  /** Foreign entries already alarmed (one alarm each, not one per sweep). */
  private readonly alarmed = new Set<string>()
  private closed = false
  /**
   * The latest alarms raised, oldest first. Bounded: at most `keepRecent` (default 1000)
   * are kept, so a POP that runs for months does not grow it; the full record is the
   * audit log (every alarm is a sync.alarm event) and the log lines.
   */
  readonly alarms: TreeAlarm[] = []
  /**
   * The latest live paths judged (alarm or not), oldest first: lets a caller wait for the
   * verdict on a change instead of sleeping past the settle delay. Bounded like
   * {@link TreeWatch.alarms}: the last `keepRecent` (default 1000).
   */
  readonly judged: string[] = []

  constructor(o: TreeWatchOptions) {
    this.o = o
  }

  /** Starts the live watches; the first sweep counts changes from now. */
  async start(): Promise<void> {
    this.lastSweepStart = Date.now()
    const root = this.o.store.root
    try {
      this.watchers.push(this.watchDir(root, ''))
      for (const s of SHARDS) this.watchers.push(this.watchDir(join(root, s), s))
    } catch (err) {
      await this.close()
      throw err
    }
    const every = this.o.sweepMs ?? 600_000
    if (every > 0) {
      this.sweepTimer = setInterval(() => {
        void this.sweep().catch(() => undefined)
      }, every)
      this.sweepTimer.unref()
    }
  }

  /** Stops the watches and timers and waits for a sweep in flight. */
  async close(): Promise<void> {
    this.closed = true
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    if (this.sweepTimer) clearInterval(this.sweepTimer)
    this.sweepTimer = null
    for (const w of this.watchers) w.close()
    this.watchers = []
    await this.sweeping?.catch(() => undefined)
  }

  /** Number of live inotify watches (257 at any store size). */
  get watchCount(): number {
    return this.watchers.length
  }

  /** The agent announces paths (relative to the store root) it is about to write. */
  expect(paths: readonly string[], ms: number = this.o.expectMs ?? 120_000): void {
    const until = Date.now() + ms
    for (const p of paths) this.expected.set(p, until)
  }

  /** The agent's write is over: its events may still trickle in for the settle delay. */
  done(paths: readonly string[]): void {
    this.expect(paths, (this.o.settleMs ?? 2000) + 1000)
  }

  /** Announced paths still within their window (a change to them would not be an alarm). */
  expecting(): number {
    const now = Date.now()
    let n = 0
    for (const [p, until] of this.expected) {
      if (until >= now) n++
      else this.expected.delete(p)
    }
    return n
  }

  /**
   * One pass over the whole tree (tree-check.ts): alarms for what changed since the previous
   * sweep began (`full`: reads every file). Joins a sweep in flight.
   */
  sweep(opts: { full?: boolean } = {}): Promise<TreeCheckResult> {
    if (!this.sweeping) {
      const started = Date.now()
      this.sweeping = checkTree(this.o.store, {
        sinceMs: opts.full ? 0 : this.lastSweepStart,
        skip: (rel) => this.isExpected(rel) || this.isExpectedUnder(rel),
        ...(this.o.sweepPageSize ? { pageSize: this.o.sweepPageSize } : {}),
      })
        .then((r) => {
          this.lastSweepStart = started
          // a foreign entry that went away may alarm again if it comes back
          for (const p of this.alarmed)
            if (!existsSync(join(this.o.store.root, p))) this.alarmed.delete(p)
          // a blob already queued for repair was alarmed when it was queued
          const queued = pendingRepairs(this.o.store.db)
          for (const b of r.bad) {
            if (queued[b.path]) continue
            const reason = b.reason === 'damaged' || b.reason === 'size' ? 'damaged' : 'removed'
            this.alarm({ event: 'sweep', path: b.path, reason }, true)
          }
          for (const f of r.foreign) {
            if (this.alarmed.has(f.path)) continue
            this.alarmed.add(f.path)
            this.alarm({
              event: 'sweep',
              path: f.path,
              reason: f.reason === 'foreign_dir' ? 'foreign_dir' : 'foreign_file',
            })
          }
          return r
        })
        .finally(() => {
          this.sweeping = null
        })
    }
    return this.sweeping
  }

  private watchDir(abs: string, rel: string): FSWatcher {
    const w = watch(abs, { persistent: false }, (_event, name) => {
      if (name && !name.startsWith('.')) this.onEntry(rel ? `${rel}/${name}` : name)
    })
    w.on('error', () => undefined) // a shard folder removed: its own entry event alarms
    return w
  }

  private isExpected(rel: string): boolean {
    const until = this.expected.get(rel)
    if (until === undefined) return false
    if (until < Date.now()) {
      this.expected.delete(rel)
      return false
    }
    return true
  }

  /** Whether the agent announced a path under the folder `rel` (a p0 folder it makes). */
  private isExpectedUnder(rel: string): boolean {
    const prefix = rel + '/'
    const now = Date.now()
    for (const [p, until] of this.expected) if (until >= now && p.startsWith(prefix)) return true
    return false
  }

  private later(fn: () => void, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t)
      if (!this.closed) fn()
    }, ms)
    this.timers.add(t)
  }

  /** An entry of the root or of a shard folder appeared or went away: judge it once settled. */
  private onEntry(rel: string): void {
    this.later(() => {
      this.judgeEntry(rel)
      this.keep(this.judged, rel)
    }, this.o.settleMs ?? 2000)
  }

  private judgeEntry(rel: string): void {
    const ix = this.o.store.index
    const abs = join(this.o.store.root, rel)
    const there = existsSync(abs)
    const top = !rel.includes('/')
    if (top) {
      // the root holds the 256 shard folders and nothing else
      if (/^[0-9a-f]{2}$/.test(rel)) {
        if (!there) this.alarm({ event: 'unlinkDir', path: rel, reason: 'dir_removed' })
      } else if (there) this.alarmForeign({ event: 'add', path: rel, reason: 'foreign_file' })
      return
    }
    const held = ix.holdsUnder(rel)
    if (!there) {
      if (held && !this.isExpectedUnder(rel))
        this.alarm({ event: 'unlinkDir', path: rel, reason: 'dir_removed' })
      return
    }
    if (held || this.isExpected(rel) || this.isExpectedUnder(rel)) return
    this.alarmForeign({ event: 'addDir', path: rel, reason: 'foreign_dir' })
  }

  private alarmForeign(a: TreeAlarm): void {
    if (this.alarmed.has(a.path)) return
    this.alarmed.add(a.path)
    this.alarm(a)
  }

  /** Appends to a bounded list (alarms, judged): drops the oldest past `keepRecent`. */
  private keep<T>(list: T[], item: T): void {
    list.push(item)
    const max = Math.max(1, this.o.keepRecent ?? 1000)
    if (list.length > max) list.splice(0, list.length - max)
  }

  private alarm(a: TreeAlarm, repair = false): void {
    this.keep(this.alarms, a)
    try {
      if (repair) queueRepair(this.o.store.db, [{ path: a.path, reason: `watch:${a.reason}` }])
      this.o.audit({
        kind: 'sync.alarm',
        actor: this.o.popId,
        outcome: 'alarm',
        reason: `tree_${a.reason}`,
        data: { event: a.event, path: a.path },
      })
    } finally {
      this.o.onAlarm?.(a)
    }
  }
}
