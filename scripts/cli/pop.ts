// `clavitor pop run|sync` (the POP agent: scheduler + WL3 lookup server, or one pull) and
// `clavitor core pops|rsyncd-config` (the core's view of POP replication, the rsync daemon
// config). Small blocks, each joining its parent command whoever made it first
// (`pop init` lives in ca.ts, `core pop …` in pop-admin.ts).
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dataLayout } from '../../lib/db/data-dir.js'
import { dirname, join, resolve } from 'node:path'
import { Option, type Command } from 'commander'
import cliProgress from 'cli-progress'
import { claError } from '../../lib/errors.js'
import { createLogger } from '../../lib/log.js'
import { checkCoreUrl, openPop, type Pop, type PopOptions } from '../../lib/pop.js'
import { PROTECTIONS, type Protection } from '../../lib/store/index.js'
import type { RunOutcome } from '../../lib/pop-sync/agent.js'
import { listPopSyncStates } from '../../lib/core-sync/pop-state.js'
import type { PullProgress } from '../../lib/pop-sync/pull.js'
import { renderRsyncdConfig, type RsyncdAuth } from '../../lib/core-sync/rsyncd-config.js'
import { auditRsyncLog, prepareRsyncdLogFile } from '../../lib/core-sync/rsync-audit.js'
import { rsyncdAuthFromRegistry, sshAuthorizedKeyLine } from '../../lib/core-sync/rsync-auth.js'
import { getPop } from '../../lib/auth/pops.js'
import { PullLoop } from '../../lib/pop-sync/pull-loop.js'
import { WAKE_WAIT_S } from '../../lib/pop-sync/wake.js'
import { parseTrustProxy, type TrustProxy } from '../../lib/auth/trust-proxy.js'
import {
  action,
  metricsTokenOption,
  onShutdown,
  parseListen,
  printJson,
  readMetricsToken,
  subcommand,
} from './common.js'

/**
 * The core, for the `core …` commands below. Imported on use: lib/core.js brings billing,
 * the admin app and Fastify, which a POP's own commands (`pop run`, `pop sync`, …) never
 * need, and loading them cost every one of those commands ~0.3 s of CPU at start.
 */
async function openCoreOnUse(dataDir: string) {
  const { openCore } = await import('../../lib/core.js')
  return openCore({ dataDir })
}

/** Options of `pop run` / `pop sync`, from flags, CLAVITOR_* variables, then --config. */
interface PopCliOptions {
  config?: string
  data?: string
  id?: string
  core?: string
  rsyncSource?: string
  listen?: string
  trustProxy?: string
  metricsTokenFile?: string
  protection?: string
  pageSize?: string | number
  rsyncTimeout?: string | number
  rsyncArg?: string[]
  fullVerifyHours?: string | number
  wait?: string | number
  lookupCacheMb?: string | number
  insecurePlainHttp?: boolean
  verify?: boolean
  json?: boolean
  watch?: boolean
}

/** Keys a --config JSON file may hold (same names as the long options, camelCase). */
const CONFIG_KEYS = [
  'data',
  'id',
  'core',
  'rsyncSource',
  'listen',
  'trustProxy',
  'protection',
  'pageSize',
  'rsyncTimeout',
  'rsyncArg',
  'fullVerifyHours',
  'wait',
  'lookupCacheMb',
] as const

function readConfig(file: string): Record<string, unknown> {
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'))
  } catch (cause) {
    throw claError('CLA_ERR_INVALID_OPTION', `--config ${file}: ${(cause as Error).message}`, {
      cause,
    })
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw claError('CLA_ERR_INVALID_OPTION', `--config ${file}: must be a JSON object`)
  }
  for (const k of Object.keys(parsed)) {
    if (!(CONFIG_KEYS as readonly string[]).includes(k)) {
      throw claError(
        'CLA_ERR_INVALID_OPTION',
        `--config ${file}: unknown key ${JSON.stringify(k)} (known: ${CONFIG_KEYS.join(', ')})`,
      )
    }
  }
  return parsed as Record<string, unknown>
}

function intOpt(name: string, v: unknown, min: number, max: number): number | undefined {
  if (v === undefined) return undefined
  const n = typeof v === 'number' ? v : /^\d+$/.test(String(v)) ? Number(v) : NaN
  if (!Number.isInteger(n) || n < min || n > max) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `--${name} must be an integer from ${min} to ${max}; got ${String(v)}`,
    )
  }
  return n
}

/** Merges flags/env (commander) over the config file; validates once. */
export function resolvePopOptions(o: PopCliOptions): {
  pop: Omit<PopOptions, 'log' | 'watch'>
  listen?: { host: string; port: number }
  trustProxy: TrustProxy
  /** Feed long-poll seconds (0 = off). */
  waitS: number
} {
  const cfg = o.config ? readConfig(o.config) : {}
  const pick = <K extends (typeof CONFIG_KEYS)[number]>(k: K): unknown =>
    (o as Record<string, unknown>)[k] ?? cfg[k]
  const need = (k: (typeof CONFIG_KEYS)[number], flag: string, env: string): string => {
    const v = pick(k)
    if (typeof v !== 'string' || v === '') {
      throw claError(
        'CLA_ERR_INVALID_OPTION',
        `${flag} is required (or ${env}, or "${k}" in --config)`,
      )
    }
    return v
  }
  const protection = (pick('protection') as string | undefined) ?? 'best-effort'
  if (!(PROTECTIONS as readonly string[]).includes(protection)) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `--protection must be one of ${PROTECTIONS.join(', ')}; got ${protection}`,
    )
  }
  const pageSize = intOpt('page-size', pick('pageSize'), 1, 5000)
  const timeout = intOpt('rsync-timeout', pick('rsyncTimeout'), 1, 3600)
  const verifyHours = intOpt('full-verify-hours', pick('fullVerifyHours'), 0, 24 * 365)
  const waitS = intOpt('wait', pick('wait'), 0, 50) ?? WAKE_WAIT_S
  const cacheMb = intOpt('lookup-cache-mb', pick('lookupCacheMb'), 0, 1024 * 1024)
  const extra = pick('rsyncArg')
  if (extra !== undefined && !(Array.isArray(extra) && extra.every((x) => typeof x === 'string'))) {
    throw claError('CLA_ERR_INVALID_OPTION', '"rsyncArg" must be an array of strings')
  }
  const listen = pick('listen')
  const trustProxy = pick('trustProxy')
  if (trustProxy !== undefined && typeof trustProxy !== 'string')
    throw claError('CLA_ERR_INVALID_OPTION', '"trustProxy" must be a string, e.g. "127.0.0.1"')
  const coreUrl = need('core', '--core', 'CLAVITOR_CORE_URL')
  checkCoreUrl(coreUrl, o.insecurePlainHttp === true)
  return {
    pop: {
      dataDir: need('data', '--data', 'CLAVITOR_DATA'),
      popId: need('id', '--id', 'CLAVITOR_POP_ID'),
      coreUrl,
      rsyncSource: need('rsyncSource', '--rsync-source', 'CLAVITOR_RSYNC_SOURCE'),
      protection: protection as Protection,
      ...(pageSize ? { pageSize } : {}),
      ...(verifyHours !== undefined ? { fullVerifyEveryMs: verifyHours * 3_600_000 } : {}),
      ...(cacheMb !== undefined ? { lookup: { maxBytes: cacheMb * 1024 * 1024 } } : {}),
      rsync: {
        ...(timeout ? { ioTimeoutSec: timeout } : {}),
        ...(extra ? { extraArgs: extra as string[] } : {}),
      },
    },
    ...(typeof listen === 'string' ? { listen: parseListen(listen) } : {}),
    trustProxy: parseTrustProxy(trustProxy),
    waitS,
  }
}

function popOptions(cmd: Command, withListen: boolean): Command {
  cmd
    .addOption(
      new Option('--config <file>', 'JSON file with any of: ' + CONFIG_KEYS.join(', ')).env(
        'CLAVITOR_POP_CONFIG',
      ),
    )
    .addOption(new Option('--data <dir>', "the POP's data folder").env('CLAVITOR_DATA'))
    .addOption(new Option('--id <pop>', 'this POP id').env('CLAVITOR_POP_ID'))
    .addOption(new Option('--core <url>', "the core's sync API base URL").env('CLAVITOR_CORE_URL'))
    .addOption(
      new Option(
        '--rsync-source <src>',
        "the core's store root for rsync: rsync://host:port/module/, host:/path/ or a folder",
      ).env('CLAVITOR_RSYNC_SOURCE'),
    )
    .addOption(
      new Option(
        '--protection <mode>',
        'store protection: enforce | best-effort | off (default best-effort)',
      ).env('CLAVITOR_PROTECTION'),
    )
    .addOption(
      new Option(
        '--page-size <n>',
        'feed page size = rsync list bound, 1..5000 (default 1000)',
      ).env('CLAVITOR_SYNC_PAGE_SIZE'),
    )
    .addOption(
      new Option('--rsync-timeout <s>', 'rsync --timeout/--contimeout seconds (default 30)').env(
        'CLAVITOR_RSYNC_TIMEOUT',
      ),
    )
    .addOption(new Option('--rsync-arg <arg...>', 'extra rsync argument(s), e.g. -e "ssh -i KEY"'))
    .addOption(
      new Option(
        '--full-verify-hours <h>',
        'full verify of every held blob at most this often (default 24, 0 = every run)',
      ).env('CLAVITOR_FULL_VERIFY_HOURS'),
    )
    .addOption(
      new Option(
        '--insecure-plain-http',
        'allow an http:// --core on a non-loopback host (tests only: no POP authentication)',
      ).env('CLAVITOR_INSECURE_PLAIN_HTTP'),
    )
  if (withListen)
    cmd.addOption(
      new Option(
        '--wait <s>',
        `hold a long-poll of this many seconds on the core's feed and pull as soon as a blob commits (1..50, 0 = hourly pulls only; default ${WAKE_WAIT_S})`,
      ).env('CLAVITOR_SYNC_WAIT'),
    )
  if (withListen)
    cmd.option(
      '--no-watch',
      'do not watch the sealed tree (live watches on the shard folders, a sweep every 10 minutes)',
    )
  if (withListen)
    cmd
      .addOption(
        new Option('--listen <host:port>', 'address of the WL3 lookup server').env(
          'CLAVITOR_LISTEN',
        ),
      )
      .addOption(
        new Option(
          '--trust-proxy <proxies>',
          'a proxy in front of the lookups: its address(es)/CIDRs or loopback (default off)',
        ).env('CLAVITOR_TRUST_PROXY'),
      )
      .addOption(
        new Option(
          '--lookup-cache-mb <n>',
          'MiB of checked WL3 answers kept in memory, 0..1048576 (default 256; each answer costs its file + 1.25 KiB: size it to hold them all for every lookup from memory)',
        ).env('CLAVITOR_LOOKUP_CACHE_MB'),
      )
      .addOption(metricsTokenOption())
  return cmd
}

function progressReporter(): { onProgress: (p: PullProgress) => void; stop: () => void } {
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: 'sync [{bar}] {value}/{total} blobs | sealed {sealed} | held {already}',
        stream: process.stderr,
        hideCursor: true,
      },
      cliProgress.Presets.shades_classic,
    )
    let started = false
    return {
      onProgress: (p) => {
        const done = p.sealed + p.already
        if (!started) {
          bar.start(done + p.remaining, done, { sealed: p.sealed, already: p.already })
          started = true
        }
        bar.setTotal(done + p.remaining)
        bar.update(done, { sealed: p.sealed, already: p.already })
      },
      stop: () => {
        if (started) bar.stop()
      },
    }
  }
  return {
    onProgress: (p) =>
      process.stdout.write(
        `sync: sealed ${p.sealed}, already held ${p.already}, remaining ${p.remaining}, cursor ${p.cursor ?? '-'}\n`,
      ),
    stop: () => {},
  }
}

function summary(r: RunOutcome): string {
  return (
    `sync done: sealed ${r.sealed}, already held ${r.already}, pages ${r.pages}, repaired ${r.repair.repaired.length}, ` +
    `lag ${r.lag_us === null ? 'unknown' : `${(r.lag_us / 1e6).toFixed(1)} s`}, cursor ${r.cursor ?? '-'}`
  )
}

export function register(program: Command): void {
  const pop = subcommand(program, 'pop', 'POP-side commands')

  // --- pop sync --once --------------------------------------------------------------
  popOptions(
    pop
      .command('sync')
      .description(
        'one pull from the core until caught up (check, repair, pull, report); exits non-zero on failure',
      ),
    false,
  )
    .option('--once', 'run once and exit (the only mode; `pop run` schedules)', true)
    .option('--verify', 'full verify of every held blob before pulling')
    .addOption(new Option('--json', 'print the outcome as JSON').env('CLAVITOR_JSON'))
    .action(
      action(async (o: PopCliOptions) => {
        const { pop: po } = resolvePopOptions(o)
        const log = createLogger({
          level: process.env.CLAVITOR_LOG_LEVEL ?? 'warn',
          base: { pop: po.popId },
          destination: process.stderr,
        })
        const p = await openPop({ ...po, log })
        const ac = new AbortController()
        const onSignal = () => ac.abort()
        // `on`, as in onShutdown (common.ts): a `once` listener is gone when execa's cleanup
        // looks for one, and it re-raises the signal
        process.on('SIGTERM', onSignal)
        process.on('SIGINT', onSignal)
        const prog = o.json ? { onProgress: () => {}, stop: () => {} } : progressReporter()
        try {
          const r = await p.sync.run({
            signal: ac.signal,
            onProgress: prog.onProgress,
            ...(o.verify ? { verify: true } : {}),
          })
          prog.stop()
          if (o.json)
            printJson({ ok: true, ...r, alarms: r.alarms.map((a) => a.toJSON()), head: r.head })
          else process.stdout.write(summary(r) + '\n')
          for (const a of r.alarms)
            process.stderr.write(`clavitor: ALARM ${a.code}: ${a.message}\n`)
          if (r.report_error)
            process.stderr.write(
              `clavitor: warning: report to the core failed: ${r.report_error}\n`,
            )
        } finally {
          prog.stop()
          process.off('SIGTERM', onSignal)
          process.off('SIGINT', onSignal)
          await p.close()
        }
      }),
    )

  // --- pop run ----------------------------------------------------------------------
  popOptions(
    pop
      .command('run')
      .description(
        'the POP agent: hourly staggered pulls and the WL3 lookup server; SIGTERM stops cleanly',
      ),
    true,
  ).action(
    action(async (o: PopCliOptions) => {
      const { pop: po, listen, trustProxy, waitS } = resolvePopOptions(o)
      const metrics = readMetricsToken(o.metricsTokenFile)
      if (!listen)
        throw claError(
          'CLA_ERR_INVALID_OPTION',
          '--listen is required (or CLAVITOR_LISTEN, or "listen" in --config)',
        )
      const log = createLogger({ base: { pop: po.popId } })
      const p: Pop = await openPop({ ...po, log, watch: o.watch !== false })
      const { buildPopApp } = await import('../../pop-agent/app.js')
      const app = await buildPopApp({
        pop: p,
        trustProxy,
        ...(metrics ? { metrics } : {}),
        fastify: { loggerInstance: log.child({ component: 'http' }) },
      })
      // hourly staggered pulls, and a pull within seconds of each commit (the long-poll)
      const pulls = new PullLoop({
        sync: p.sync,
        waitS,
        log: log.child({ component: 'wake' }),
        onRun: (r) =>
          log.info(
            {
              ok: r.ok,
              reason: r.reason,
              failures: r.failures,
              next_at: r.nextAt && new Date(r.nextAt).toISOString(),
            },
            'sync run',
          ),
      })
      const scheduler = pulls.scheduler
      onShutdown(async (sig) => {
        log.info({ sig }, 'stopping: aborting a pull in flight, closing the server')
        await pulls.stop()
        await app.close()
        await p.close()
      })
      // SIGUSR2: a manual run now
      process.on('SIGUSR2', () => void scheduler.runNow())
      await app.listen({ host: listen.host, port: listen.port })
      pulls.start()
      log.info(
        { listen: `${listen.host}:${listen.port}`, next_at: scheduler.nextAt, wait_s: waitS },
        'POP agent running',
      )
    }),
  )

  // --- core pops --------------------------------------------------------------------
  const core = subcommand(program, 'core', 'core administration')
  core
    .command('pops')
    .description(
      'every POP with its replication state (cursor, last success, last error, lag), as JSON',
    )
    .addOption(
      new Option('--data <dir>', "the core's data folder")
        .env('CLAVITOR_DATA')
        .makeOptionMandatory(),
    )
    .action(
      action(async (o: { data: string }) => {
        const c = await openCoreOnUse(o.data)
        try {
          printJson(listPopSyncStates(c.db))
        } finally {
          await c.close()
        }
      }),
    )

  // --- core rsyncd-config -----------------------------------------------------------
  core
    .command('rsyncd-config')
    .description(
      "an rsyncd.conf with one read-only module over the core's store root; hosts allow and auth users from the live POPs (their allowlists and rsync passwords), the secrets file refreshed",
    )
    .addOption(
      new Option('--data <dir>', "the core's data folder (the module path is {data}/store)")
        .env('CLAVITOR_DATA')
        .makeOptionMandatory(),
    )
    .option('--module <name>', 'module name', 'clavitor-store')
    .option('--address <ip>', 'address the daemon binds (default: all)')
    .option('--port <n>', 'daemon port', '873')
    .option('--uid <user>', 'user the module reads as', 'nobody')
    .option('--gid <group>', 'group the module reads as', 'nogroup')
    .option('--no-chroot', 'do not chroot into the store root (default: chroot)')
    .option('--pid-file <file>', 'daemon pid file')
    .option(
      '--log-file <file>',
      'daemon log file, created 0600 for this user if missing; give the same file to core serve --rsync-log to audit each session (default: syslog)',
    )
    .option('--max-connections <n>', 'concurrent connections', '20')
    .option(
      '--lock-file <file>',
      "the module's own lock file for max connections (default {data}/rsyncd/rsyncd.lock; rsyncd's own default is shared host-wide)",
    )
    .option('--out <file>', 'write the config to this file (atomically) instead of stdout')
    .option(
      '--hosts-allow <cidr...>',
      'manual mode (no registry): addresses/CIDRs allowed to connect (adds hosts deny = *)',
    )
    .option('--auth-user <user...>', 'manual mode: rsync users allowed (read-only)')
    .option('--secrets-file <file>', 'manual mode: rsyncd secrets file (mode 0600)')
    .action(
      action(
        async (o: {
          data: string
          module: string
          address?: string
          port: string
          uid: string
          gid: string
          chroot: boolean
          pidFile?: string
          lockFile?: string
          logFile?: string
          maxConnections: string
          out?: string
          hostsAllow?: string[]
          authUser?: string[]
          secretsFile?: string
        }) => {
          const port = intOpt('port', o.port, 1, 65535)!
          const maxConnections = intOpt('max-connections', o.maxConnections, 1, 10000)!
          const lockFile = resolve(o.lockFile ?? dataLayout(o.data).rsyncd.lock)
          // its folder beside the core's data (not the data folder itself: manual mode may
          // render a config for a core that is not set up here yet)
          if (existsSync(o.data)) mkdirSync(dirname(lockFile), { recursive: true, mode: 0o700 })
          const manual = Boolean(o.hostsAllow || o.authUser || o.secretsFile)
          let auth: RsyncdAuth
          if (manual) {
            auth = {
              ...(o.hostsAllow ? { hostsAllow: o.hostsAllow } : {}),
              ...(o.authUser ? { authUsers: o.authUser } : {}),
              ...(o.secretsFile ? { secretsFile: o.secretsFile } : {}),
            }
          } else {
            const c = await openCoreOnUse(o.data)
            try {
              const r = rsyncdAuthFromRegistry(c.db, o.data)
              auth = { ...r.auth, required: true }
              for (const id of r.withoutSecret)
                process.stderr.write(
                  `clavitor: warning: POP ${id} has no rsync password and gets nothing: run \`clavitor core pop rsync-secret --id ${id}\`\n`,
                )
              for (const u of r.pruned)
                process.stderr.write(`clavitor: dropped rsync user ${u} (POP removed)\n`)
              if (r.auth.authUsers.length === 0)
                process.stderr.write(
                  'clavitor: warning: no POP has an rsync password: the module refuses everyone\n',
                )
            } finally {
              await c.close()
            }
          }
          const text = renderRsyncdConfig({
            storeRoot: resolve(dataLayout(o.data).store),
            module: o.module,
            port,
            uid: o.uid,
            gid: o.gid,
            useChroot: o.chroot,
            maxConnections,
            lockFile,
            ...(o.address ? { address: o.address } : {}),
            ...(o.pidFile ? { pidFile: o.pidFile } : {}),
            ...(o.logFile ? { logFile: o.logFile } : {}),
            auth,
          })
          if (o.logFile) prepareRsyncdLogFile(o.logFile)
          if (!o.out) return void process.stdout.write(text)
          const tmp = `${o.out}.tmp-${process.pid}`
          writeFileSync(tmp, text, { mode: 0o644 })
          renameSync(tmp, o.out)
        },
      ),
    )

  // --- core rsync-audit ------------------------------------------------------------
  core
    .command('rsync-audit')
    .description(
      "one pass over the rsync daemon's log: a pop.rsync audit row per finished session (files, bytes, the feed page), per failed login, and per refused address (core serve --rsync-log does this every minute)",
    )
    .addOption(
      new Option('--data <dir>', "the core's data folder")
        .env('CLAVITOR_DATA')
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--log <file>', "the daemon's log file (rsyncd-config --log-file)")
        .env('CLAVITOR_RSYNC_LOG')
        .makeOptionMandatory(),
    )
    .option('--json', 'print the pass as JSON')
    .action(
      action(async (o: { data: string; log: string; json?: boolean }) => {
        const c = await openCoreOnUse(o.data)
        try {
          const r = auditRsyncLog(c.db, o.log)
          if (o.json) printJson(r)
          else
            process.stdout.write(
              `${r.sessions} sessions, ${r.authFailures} failed logins, ${r.denied} refused connections audited (${r.lines} lines; ${r.open} sessions still open)\n`,
            )
        } finally {
          await c.close()
        }
      }),
    )

  // --- core rsync-ssh-line ----------------------------------------------------------
  core
    .command('rsync-ssh-line')
    .description(
      "the authorized_keys line for a POP's ssh key: read-only forced command (rrsync -ro) over the store root, from= its allowlist, restrict",
    )
    .addOption(
      new Option('--data <dir>', "the core's data folder (store root {data}/store)")
        .env('CLAVITOR_DATA')
        .makeOptionMandatory(),
    )
    .requiredOption('--pop <id>', 'the POP id (a live POP: its allowlist becomes from=)')
    .requiredOption('--key <file>', "the POP's ssh public key file (one line, e.g. id_ed25519.pub)")
    .option('--rrsync <path>', 'the rrsync script on the core', '/usr/bin/rrsync')
    .action(
      action(async (o: { data: string; pop: string; key: string; rrsync: string }) => {
        let key: string
        try {
          key = readFileSync(o.key, 'utf8')
        } catch (cause) {
          throw claError(
            'CLA_ERR_INVALID_OPTION',
            `cannot read ${o.key}: ${(cause as Error).message}`,
          )
        }
        const c = await openCoreOnUse(o.data)
        let allow: string[]
        try {
          const p = getPop(c.db, o.pop)
          if (!p) throw claError('CLA_ERR_NOT_FOUND', `no live POP ${o.pop}`)
          allow = p.allowlist
        } finally {
          await c.close()
        }
        process.stdout.write(
          sshAuthorizedKeyLine({
            popId: o.pop,
            publicKey: key,
            storeRoot: resolve(dataLayout(o.data).store),
            from: allow,
            rrsync: o.rrsync,
          }) + '\n',
        )
      }),
    )
}
