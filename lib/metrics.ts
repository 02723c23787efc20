// Prometheus metrics (prom-client), one Registry per instance so that several cores and
// POPs in one process (tests, the demo) never share counters.
//
// Naming: clavitor_<noun>_<unit>; every count has an error count beside it. Figures that
// the database already holds (blobs, bytes, pending dual-writes, lag, webhook outcomes) are
// computed on scrape from SQLite rather than kept twice in memory. Auth refusals are not:
// counting them from the audit log cost a scan of every row of their kind per scrape,
// growing with the log; they are counters incremented where the refusal is audited.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { Db } from './db/open.js'
import { blobIndex } from './store/blob-index.js'
import type { LookupCacheStats } from './pop-sync/lookup.js'

/** Which kind of process the metrics describe; set as the `role` label of every metric. */
export type Role = 'core' | 'pop'

/** What a {@link Metrics} registry reports on. */
export interface MetricsOptions {
  role: Role
  /** The instance's database: figures it already holds are computed from it at each scrape. */
  db: Db
  /** POPs: this POP's lag behind the core in µs as of its last run (null = unknown). */
  popLagUs?: () => number | null
  /** POPs: the WL3 lookup cache's figures, read at each scrape (lib/pop-sync/lookup.ts). */
  lookupCache?: () => LookupCacheStats
  /** Also export process metrics (CPU, memory, event loop). Default true. */
  processMetrics?: boolean
}

const BILLING_TABLES = [
  'products',
  'prices',
  'discounts',
  'customers',
  'addresses',
  'businesses',
  'subscriptions',
  'transactions',
  'adjustments',
] as const

/** The Prometheus registry of one core or POP instance (prom-client), served at /metrics. */
export class Metrics {
  /** The instance's own registry (never prom-client's global one). */
  readonly registry = new Registry()
  /** HTTP request latency, seconds, by method, route pattern and status. */
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>
  /** POP pull runs, by trigger: regular (hourly slot, retry), wake (feed long-poll), manual. */
  readonly syncRuns: Counter<'trigger'>
  /** POP pull runs that failed, by error code. */
  readonly syncRunErrors: Counter<'reason'>
  /** Blobs verified, sealed and indexed by POP pulls. */
  readonly syncBlobs: Counter<string>
  /** POP API refusals before any credential, counted rather than audited one by one. */
  readonly refusalsCounted: Counter<'stage' | 'reason'>
  /**
   * POP API requests refused, each also a `pop.request` audit row, by reason: incremented
   * where the row is written (PopAuthenticator's `onRefused`), so a scrape reads no table.
   */
  readonly authRefusals: Counter<'reason'>
  /**
   * Vault API key checks refused, each also a `credential.auth` audit row, by error code:
   * incremented where the row is written (Credentials' `onAuthRefused`).
   */
  readonly credentialAuthRefusals: Counter<'reason'>

  constructor(opts: MetricsOptions) {
    const { db, role } = opts
    const registers = [this.registry]
    this.registry.setDefaultLabels({ role })
    if (opts.processMetrics ?? true)
      collectDefaultMetrics({ register: this.registry, prefix: 'clavitor_' })

    this.httpDuration = new Histogram({
      name: 'clavitor_http_request_duration_seconds',
      help: 'HTTP request latency by method, route pattern and status',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    })
    this.syncRuns = new Counter({
      name: 'clavitor_sync_runs_total',
      help: 'POP pull runs, by trigger: regular (the hourly slot or a retry), wake (the feed long-poll), manual',
      labelNames: ['trigger'],
      registers,
    })
    this.syncRunErrors = new Counter({
      name: 'clavitor_sync_run_errors_total',
      help: 'POP pull runs that failed, by reason code',
      labelNames: ['reason'],
      registers,
    })
    this.syncBlobs = new Counter({
      name: 'clavitor_sync_blobs_total',
      help: 'Blobs verified, sealed and indexed by POP pulls',
      registers,
    })

    this.refusalsCounted = new Counter({
      name: 'clavitor_pop_api_refusals_counted_total',
      help: 'POP API refusals before any credential, counted instead of audited one by one (summarized as pop.refusals rows), by stage and reason',
      labelNames: ['stage', 'reason'],
      registers,
    })

    this.authRefusals = new Counter({
      name: 'clavitor_auth_refusals_total',
      help: 'POP API requests refused (each a pop.request audit row), by reason code, since the process started',
      labelNames: ['reason'],
      registers,
    })
    this.credentialAuthRefusals = new Counter({
      name: 'clavitor_credential_auth_refusals_total',
      help: 'Credentials API requests whose vault API key was refused (each a credential.auth audit row), by error code, since the process started',
      labelNames: ['reason'],
      registers,
    })

    // a gauge read at each scrape, with no labels
    const scraped = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read())
        },
      })

    const blobs = blobIndex(db)
    scraped('clavitor_blobs', 'Sealed .cla blobs in the index', () => blobs.totals().count)
    scraped('clavitor_blob_bytes', 'Bytes of .cla files in the index', () => blobs.totals().bytes)

    const popLagUs = opts.popLagUs
    if (popLagUs) {
      new Gauge({
        name: 'clavitor_sync_lag_seconds',
        help: 'How far this POP is behind the core, as of its last run',
        registers,
        collect() {
          const lag = popLagUs()
          // unknown (no run yet, or nothing held): no series at all, neither 0 (which would
          // read "caught up") nor the last known value
          if (lag === null) this.remove({})
          else this.set(lag / 1e6)
        },
      })
    }

    const lookupCache = opts.lookupCache
    if (lookupCache) {
      // the cache's own counts, read at the scrape: the lookups' fast path keeps only two
      // integers, and an operator sizes --lookup-cache-mb from the hit ratio and the bytes
      scraped(
        'clavitor_lookup_cache_bytes',
        'Bytes the WL3 lookup cache holds (each answer counted as its file plus a fixed overhead)',
        () => lookupCache().bytes,
      )
      scraped(
        'clavitor_lookup_cache_max_bytes',
        'The WL3 lookup cache bound (pop run --lookup-cache-mb)',
        () => lookupCache().maxBytes,
      )
      scraped(
        'clavitor_lookup_cache_answers',
        'WL3 answers (one per P0) in the lookup cache',
        () => lookupCache().answers,
      )
      const counted = { hit: 0, miss: 0, not_found: 0 }
      new Counter({
        name: 'clavitor_lookups_total',
        help: 'WL3 lookups since the process started, by result: hit (answered from the cache), miss (index and file read), not_found (no blob of that P0 here)',
        labelNames: ['result'],
        registers,
        collect() {
          const s = lookupCache()
          const now = { hit: s.hits, miss: s.misses, not_found: s.notFound }
          // the counts only grow (a cache dropped keeps them), so the difference is new lookups
          for (const result of ['hit', 'miss', 'not_found'] as const) {
            this.inc({ result }, Math.max(0, now[result] - counted[result]))
            counted[result] = Math.max(now[result], counted[result])
          }
        },
      })
    }

    if (role === 'core') {
      const pending = BILLING_TABLES.map((t) => ({
        t,
        stmt: db.prepare(
          `SELECT sum(pending_since IS NOT NULL AND failed_at IS NULL) AS p, sum(failed_at IS NOT NULL) AS f FROM ${t}`,
        ),
      }))
      new Gauge({
        name: 'clavitor_billing_pending',
        help: 'Rows written here and not yet confirmed by Paddle, by entity',
        labelNames: ['entity'],
        registers,
        collect() {
          for (const { t, stmt } of pending)
            this.set({ entity: t }, (stmt.get() as { p: number | null }).p ?? 0)
        },
      })
      new Gauge({
        name: 'clavitor_billing_failed',
        help: 'Rows Paddle refused for good (4xx), by entity',
        labelNames: ['entity'],
        registers,
        collect() {
          for (const { t, stmt } of pending)
            this.set({ entity: t }, (stmt.get() as { f: number | null }).f ?? 0)
        },
      })
      const lag = db.prepare('SELECT pop_id, lag_us FROM pop_sync_state')
      new Gauge({
        name: 'clavitor_pop_lag_seconds',
        help: 'How far each POP is behind the core, as it last reported',
        labelNames: ['pop'],
        registers,
        collect() {
          this.reset()
          for (const r of lag.all() as Array<{ pop_id: string; lag_us: number | null }>) {
            if (r.lag_us !== null) this.set({ pop: r.pop_id }, r.lag_us / 1e6)
          }
        },
      })
      const webhooks = db.prepare(
        'SELECT outcome, count(*) AS n FROM paddle_events GROUP BY outcome',
      )
      new Gauge({
        name: 'clavitor_webhooks',
        help: 'Paddle webhook deliveries recorded, by outcome',
        labelNames: ['outcome'],
        registers,
        collect() {
          this.reset()
          for (const r of webhooks.all() as Array<{ outcome: string; n: number }>)
            this.set({ outcome: r.outcome }, r.n)
        },
      })
    }
  }

  /** Records one HTTP request; `route` is the route pattern, never the raw URL. */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    this.httpDuration.observe({ method, route, status: String(status) }, seconds)
  }

  /**
   * {@link observeRequest} for one method, route pattern and status, its labels resolved
   * once: for a path that records many requests of the same kind (pop-agent/fast-lookups.ts).
   */
  requestObserver(method: string, route: string, status: number): (seconds: number) => void {
    const h = this.httpDuration.labels({ method, route, status: String(status) })
    return (seconds) => h.observe(seconds)
  }

  /** The current metrics in the Prometheus text format, with its content type. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() }
  }
}
