// Watches a POP's sealed tree (chokidar). A change the agent did not announce is an
// alarm: logged, audited (kind sync.alarm), and — for an indexed blob that went missing
// or no longer verifies — queued for repair, so the next pull puts it back from the core.
// Events are checked against the files themselves, so attribute changes (our own chattr)
// and the agent's own ingests are not alarms.
import { existsSync } from 'node:fs'
import { relative, sep } from 'node:path'
import { watch, type FSWatcher } from 'chokidar'
import type { AuditEventInput } from '../audit/log.js'
import type { BlobInfo, BlobStore } from '../store/index.js'
import { queueRepair } from './repair.js'

export interface TreeAlarm {
  event: 'add' | 'change' | 'unlink' | 'addDir' | 'unlinkDir'
  path: string
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
  /** Delay before an `add` is judged (the agent indexes right after linking), ms. Default 2000. */
  settleMs?: number
  /** Use polling (for filesystems without inotify). Default false. */
  usePolling?: boolean
}

export class TreeWatch {
  private readonly o: TreeWatchOptions
  private watcher: FSWatcher | null = null
  private readonly expected = new Map<string, number>()
  private readonly timers = new Set<NodeJS.Timeout>()
  readonly alarms: TreeAlarm[] = []
  /**
   * Paths whose `add` has been judged (alarm or not), in order: lets a caller wait for
   * the verdict on its own writes instead of sleeping past the settle delay.
   */
  readonly judged: string[] = []

  constructor(o: TreeWatchOptions) {
    this.o = o
  }

  /** Resolves once the initial scan is done and events are live. */
  async start(): Promise<void> {
    const w = watch(this.o.store.root, {
      ignoreInitial: true,
      persistent: true,
      usePolling: this.o.usePolling ?? false,
      ignored: (p: string) => p.includes(`${sep}.`),
      awaitWriteFinish: false,
    })
    this.watcher = w
    w.on('all', (event, p) => this.onEvent(event as TreeAlarm['event'], p))
    await new Promise<void>((resolve, reject) => {
      w.once('ready', () => resolve())
      w.once('error', reject)
    })
  }

  async close(): Promise<void> {
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
    await this.watcher?.close()
    this.watcher = null
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
    for (const until of this.expected.values()) if (until >= now) n++
    return n
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

  private later(fn: () => void | Promise<void>, ms: number): void {
    const t = setTimeout(() => {
      this.timers.delete(t)
      void fn()
    }, ms)
    this.timers.add(t)
  }

  private onEvent(event: TreeAlarm['event'], abs: string): void {
    const rel = relative(this.o.store.root, abs).split(sep).join('/')
    if (!rel || rel.startsWith('..')) return
    const row = this.o.store.index.byPath(rel)
    switch (event) {
      case 'unlink':
        if (row && !this.isExpected(rel)) this.alarm({ event, path: rel, reason: 'removed' }, row)
        return
      case 'change':
        // attribute changes (chattr) also arrive as change: judge the content
        if (row) void this.checkContent(event, rel, row)
        return
      case 'add':
        this.later(async () => {
          const r = this.o.store.index.byPath(rel)
          if (r) await this.checkContent(event, rel, r)
          else if (!this.isExpected(rel) && existsSync(abs))
            this.alarm({ event, path: rel, reason: 'foreign_file' })
          this.judged.push(rel)
        }, this.o.settleMs ?? 2000)
        return
      case 'addDir':
        // p0 folders are made by the agent's ingest just before the link
        this.later(() => {
          const inIndex = this.o.store.index.holdsUnder(rel)
          const shard = /^[0-9a-f]{2}$/.test(rel)
          if (
            !inIndex &&
            !shard &&
            existsSync(abs) &&
            ![...this.expected.keys()].some((p) => p.startsWith(rel + '/'))
          )
            this.alarm({ event, path: rel, reason: 'foreign_dir' })
        }, this.o.settleMs ?? 2000)
        return
      case 'unlinkDir':
        this.alarm({ event, path: rel, reason: 'dir_removed' })
        return
    }
  }

  private async checkContent(event: TreeAlarm['event'], rel: string, row: BlobInfo): Promise<void> {
    try {
      await this.o.store.readFile(row)
    } catch {
      if (!existsSync(`${this.o.store.root}/${rel}`)) {
        if (!this.isExpected(rel)) this.alarm({ event, path: rel, reason: 'removed' }, row)
        return
      }
      this.alarm({ event, path: rel, reason: 'damaged' }, row)
    }
  }

  private alarm(a: TreeAlarm, row?: BlobInfo): void {
    this.alarms.push(a)
    try {
      if (row) queueRepair(this.o.store.db, [{ path: a.path, reason: `watch:${a.reason}` }])
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
