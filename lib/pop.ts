// A POP's library instance: everything a POP process holds open for one data folder, the
// way lib/core.ts is for the core. Apps (pop-agent/) and the CLI take one of these.
//
//   {data}/meta.db        SQLite: the store index, sync state (meta sync.*), audit log
//   {data}/store/         the POP's own WORM replica (same layout as the core)
//   {data}/sync-staging/  plain folder rsync writes into (never sealed)
//   {data}/quarantine/    damaged files moved aside by repair (evidence, never served)
//   {data}/keys/trusted/  the core's public key(s)
import { dataLayout } from './db/data-dir.js'
import { POP_ID_RE } from './auth/ca.js'
import { claError } from './errors.js'
import type { Db } from './db/open.js'
import type { Logger } from './log.js'
import { silentLogger } from './log.js'
import { BlobStore, type Protection } from './store/index.js'
import { PopSync } from './pop-sync/agent.js'
import { checkCacheBytes, Wl3Lookup } from './pop-sync/lookup.js'
import type { RsyncSettings } from './pop-sync/pull.js'
import { plainHttpFeedClient, requestFeedClient, type FeedClient } from './pop-sync/transport.js'
import { PopApiClient } from './auth/pop-client.js'
import { TreeWatch } from './pop-sync/watch.js'
import { queueRepair } from './pop-sync/repair.js'
import { Metrics } from './metrics.js'
import { popRsyncAuthArgs } from './core-sync/rsync-auth.js'

/**
 * What {@link openPop} opens: the POP's data folder, its id, where it pulls from.
 */
export interface PopOptions {
  /** The POP's data folder. */
  dataDir: string
  /** This POP's id ([a-z0-9-]{1,63}): audit actor, scheduler slot. */
  popId: string
  /** The core's sync API base URL when no `feed` is given: https:// = the authenticated POP API, http:// = plain (tests, demo). */
  coreUrl?: string
  /** Headers for the plain-HTTP feed client (tests). */
  coreHeaders?: Record<string, string>
  /** The feed transport (the authenticated client in production). Overrides coreUrl. */
  feed?: FeedClient
  /** rsync source of the core's store root: `rsync://host:port/module/`, `host:/path/` or a folder. */
  rsyncSource: string
  /** Extra rsync settings (timeouts, ssh/-e args, password env). */
  rsync?: Omit<RsyncSettings, 'source'>
  /** Store protection. Default 'best-effort'. */
  protection?: Protection
  /** Create the POP store if missing, trusting these core public keys (raw 32 bytes). */
  initTrustKeys?: Buffer[]
  /** Feed page size. Default 1000. */
  pageSize?: number
  /** Full verify cadence, ms. Default daily. */
  fullVerifyEveryMs?: number
  /** WL3 lookup cache size and read checks (lib/pop-sync/lookup.ts). Default 256 MiB, no signature re-check on the payload route. */
  lookup?: { maxBytes?: number; verifySignature?: boolean }
  /** Watch the sealed tree (lib/pop-sync/watch.ts: 257 inotify watches and a sweep). Default false; `pop run` turns it on. */
  watch?: boolean
  log?: Logger
}

/**
 * An opened POP: its replica store, the pull agent, the WL3 lookups. Close it when done.
 */
export interface Pop {
  readonly dataDir: string
  readonly popId: string
  readonly store: BlobStore
  readonly db: Db
  readonly sync: PopSync
  readonly lookup: Wl3Lookup
  readonly watcher: TreeWatch | null
  /** Prometheus registry of this POP (lib/metrics.ts), served at /metrics. */
  readonly metrics: Metrics
  /**
   * Stops the watch and timers, closes the store and the database.
   */
  close(): Promise<void>
}

export { POP_ID_RE }

/**
 * The POP's main paths inside `dataDir`.
 */
export function popPaths(dataDir: string) {
  const d = dataLayout(dataDir)
  return { staging: d.syncStaging, quarantine: d.quarantine }
}

/**
 * The feed transport for `coreUrl`: https:// is the POP API (mTLS with
 * {data}/pop-auth/{key,cert,ca}.pem, signed requests, tokens: lib/auth/pop-client.ts);
 * http:// is plain HTTP for tests and the demo on loopback only.
 */
export function feedClientFor(
  opts: Pick<PopOptions, 'dataDir' | 'popId' | 'coreUrl' | 'coreHeaders'>,
): FeedClient {
  const url = opts.coreUrl ?? ''
  if (url.startsWith('https://')) {
    return requestFeedClient(
      PopApiClient.fromDataDir(opts.dataDir, { baseUrl: url, popId: opts.popId }),
    )
  }
  if (url.startsWith('http://'))
    return plainHttpFeedClient(url, opts.coreHeaders ?? { 'x-pop-id': opts.popId })
  throw claError(
    'CLA_ERR_INVALID_OPTION',
    `--core must be an https:// (or, for tests, http://) URL; got ${url}`,
    {
      details: { field: 'coreUrl' },
    },
  )
}

/**
 * The core URL's scheme: https:// is the authenticated POP API (mTLS + signed requests +
 * tokens, {data}/pop-auth/). Plain http:// carries no POP authentication: allowed to a
 * loopback host (a POP beside its core, the demo) or with --insecure-plain-http (tests
 * across network namespaces); refused otherwise.
 */
export function checkCoreUrl(url: string, insecurePlainHttp: boolean): void {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw claError('CLA_ERR_INVALID_OPTION', `--core must be an https:// URL; got ${url}`)
  }
  if (u.protocol === 'https:') return
  if (u.protocol !== 'http:')
    throw claError('CLA_ERR_INVALID_OPTION', `--core must be an https:// URL; got ${url}`)
  const h = u.hostname.replace(/^\[|\]$/g, '')
  const loopback = h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h)
  if (!loopback && !insecurePlainHttp) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `--core ${url} is plain HTTP to another host (no POP authentication): use the POP API's https:// URL, or --insecure-plain-http for a test setup`,
    )
  }
}

/**
 * The POP's extra rsync arguments plus `--password-file={data}/pop-auth/rsync.password`
 * for a daemon source when that file exists (lib/core-sync/rsync-auth.ts), unless the caller
 * passed a --password-file of its own.
 */
function rsyncArgsWithAuth(opts: PopOptions): string[] {
  const extra = [...(opts.rsync?.extraArgs ?? [])]
  if (extra.some((a) => a.startsWith('--password-file'))) return extra
  return [...popRsyncAuthArgs(opts.dataDir, opts.rsyncSource), ...extra]
}

/**
 * Opens a POP over `opts.dataDir` (creating its store when `initTrustKeys` is given), with
 * its pull agent ({@link Pop.sync}) and lookups ({@link Pop.lookup}); nothing runs until
 * the caller runs a pull or schedules them.
 */
export async function openPop(opts: PopOptions): Promise<Pop> {
  if (typeof opts.dataDir !== 'string' || opts.dataDir.trim() === '')
    throw claError('CLA_ERR_INVALID_OPTION', 'a data folder is required (--data)', {
      details: { field: 'dataDir' },
    })
  if (!POP_ID_RE.test(opts.popId)) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `POP id must be 1-63 of [a-z0-9-], starting and ending with a letter or digit: ${JSON.stringify(opts.popId)}`,
      { details: { field: 'popId' } },
    )
  }
  if (!opts.rsyncSource)
    throw claError('CLA_ERR_INVALID_OPTION', 'an rsync source is required (--rsync-source)', {
      details: { field: 'rsyncSource' },
    })
  const feed = opts.feed ?? (opts.coreUrl ? feedClientFor(opts) : null)
  if (!feed)
    throw claError('CLA_ERR_INVALID_OPTION', "the core's URL is required (--core)", {
      details: { field: 'coreUrl' },
    })
  checkCacheBytes(opts.lookup?.maxBytes) // before the store opens: nothing left open on a bad one
  const rsyncExtra = rsyncArgsWithAuth(opts)
  const log = opts.log ?? silentLogger()
  const protection = opts.protection ?? 'best-effort'
  const store =
    opts.initTrustKeys && !BlobStore.isInitialized(opts.dataDir)
      ? await BlobStore.init({
          dataDir: opts.dataDir,
          role: 'pop',
          trustKeys: opts.initTrustKeys,
          protection,
        })
      : await BlobStore.open({ dataDir: opts.dataDir, protection, onWarning: (m) => log.warn(m) })
  let watcher: TreeWatch | null = null
  const metrics = new Metrics({
    role: 'pop',
    db: store.db,
    popLagUs: () => sync.status().last_run?.lag_us ?? null,
    lookupCache: () => lookup.stats(),
  })
  const sync = new PopSync({
    onRun: (r) => {
      metrics.syncRuns.inc({ trigger: r.trigger })
      if (!r.ok) metrics.syncRunErrors.inc({ reason: r.code ?? 'unknown' })
      metrics.syncBlobs.inc(r.sealed)
    },
    popId: opts.popId,
    store,
    feed,
    rsync: { ...opts.rsync, source: opts.rsyncSource, extraArgs: rsyncExtra },
    stagingDir: popPaths(opts.dataDir).staging,
    ...(opts.pageSize ? { pageSize: opts.pageSize } : {}),
    ...(opts.fullVerifyEveryMs !== undefined ? { fullVerifyEveryMs: opts.fullVerifyEveryMs } : {}),
    log: log.child({ component: 'sync' }),
    onAgentWrite: (paths) => watcher?.expect(paths),
    onAgentWriteDone: (paths) => watcher?.done(paths),
    watching: () => watcher !== null,
  })
  if (store.healed?.adopted) {
    // meta.db was lost (or replaced): the index is rebuilt from the files this POP holds, so
    // the next pull fetches only what is missing, but the audit chain and the cursor are
    // gone: say so loudly, and start the new chain with the fact.
    const data = { recovered: store.healed.recovered, corrupt: store.healed.corrupt }
    log.error(
      { alarm: true, ...data },
      "this POP's meta.db was lost: the index was rebuilt from the store; earlier audit history is gone",
    )
    sync.audit({
      kind: 'sync.alarm',
      actor: opts.popId,
      outcome: 'alarm',
      reason: 'meta_lost',
      data,
    })
  }
  const lookup = new Wl3Lookup(store, {
    ...opts.lookup,
    onDamaged: (info, err) => {
      try {
        queueRepair(store.db, [{ path: info.path, reason: 'lookup' }])
        sync.audit({
          kind: 'sync.alarm',
          actor: opts.popId,
          outcome: 'alarm',
          reason: 'lookup_damaged',
          data: { path: info.path, error: (err as Error).message },
        })
      } catch (auditErr) {
        log.error({ err: auditErr }, 'cannot record a damaged blob')
      }
      log.error(
        { err, path: info.path, alarm: true },
        'a served blob is missing or damaged on this POP; queued for repair',
      )
    },
  })
  try {
    if (opts.watch) {
      const wlog = log.child({ component: 'watch' })
      watcher = new TreeWatch({
        popId: opts.popId,
        store,
        audit: (ev) => sync.audit(ev),
        onAlarm: (a) =>
          wlog.error(
            { alarm: true, ...a },
            `sealed tree changed outside the agent: ${a.reason} ${a.path}`,
          ),
      })
      await watcher.start()
    }
  } catch (err) {
    await store.close()
    throw err
  }
  return {
    dataDir: opts.dataDir,
    popId: opts.popId,
    store,
    db: store.db,
    sync,
    lookup,
    metrics,
    get watcher() {
      return watcher
    },
    async close() {
      await watcher?.close()
      lookup.close()
      await store.close()
    },
  }
}
