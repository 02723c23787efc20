// Shared set-up of the propagation test and benchmarks (test/integration/propagation-netns.test.ts,
// scripts/bench/propagation.ts, scripts/bench/idle-waiters.ts): a real core (CA, store, a vault
// API key, enrolled POPs) and its processes, `clavitor core serve`, `clavitor core pop-api`
// and the rsync daemon with its generated config, and `clavitor pop run` per POP, each
// optionally inside a network namespace. A benchmark helper, not part of the package.
//
// Namespaces (root only): a core namespace with a bridge (169.254.78.1/24) and one namespace
// per POP joined to that bridge by a veth pair (169.254.78.11, .12, …). Link-local
// addresses inside the namespaces only: nothing is routed out of them, and the host's own
// namespace is not touched. Whatever talks to these servers runs inside a namespace too
// (`inNs`): the probe (scripts/bench/propagation-probe.ts) runs in the core namespace.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { issuePopCert, caPaths, initCa, popAuthPaths, popInit } from '../../lib/auth/ca.js'
import { openCore } from '../../lib/core.js'
import { nowMicros } from '../../lib/db/open.js'
import { enrolPop } from '../../lib/core-sync/pop-registry.js'
import { popRsyncPasswordFile } from '../../lib/core-sync/rsync-auth.js'
import { nextRegularRun } from '../../lib/pop-sync/scheduler.js'
import { BlobStore } from '../../lib/store/index.js'
import { copyFileSync, writeFileSync } from 'node:fs'

const REPO = new URL('../../', import.meta.url).pathname
export const CLI = join(REPO, 'scripts/clavitor')
export const TS = join(REPO, 'scripts/clavitor-ts')
export const PROBE = join(REPO, 'scripts/bench/propagation-probe.ts')

export const isRoot = process.getuid?.() === 0
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export const NET = '169.254.78'
export const CORE_IP = `${NET}.1`
export const CORE_API_PORT = 8080
export const POP_API_PORT = 8443
export const RSYNC_PORT = 873
export const LOOKUP_PORT = 8081

function ip(...args: string[]): { ok: boolean; err: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8' })
  return { ok: r.status === 0, err: (r.stderr || '').trim() }
}

/** The namespaces of one run: a core namespace with a bridge, one namespace per POP. */
export interface Topology {
  tag: string
  core: { ns: string; ip: string }
  pops: Array<{ ns: string; ip: string }>
  /** Deletes every namespace (their veths go with them). Idempotent. */
  close(): void
}

/**
 * Makes the namespaces for `nPops` POPs, or returns why it cannot (not root, no `ip`, no
 * bridge support); on failure nothing is left behind.
 */
export function makeTopology(nPops: number): Topology | string {
  if (!isRoot) return 'needs root for ip netns'
  const tag = randomBytes(3).toString('hex')
  const core = { ns: `clv-pc-${tag}`, ip: CORE_IP }
  const pops = Array.from({ length: nPops }, (_, i) => ({
    ns: `clv-pp${i}-${tag}`,
    ip: `${NET}.${11 + i}`,
  }))
  const made: string[] = []
  const close = () => {
    for (const ns of made.splice(0)) ip('netns', 'del', ns)
  }
  const br = `br${tag}`
  const steps: string[][] = [
    ['-n', core.ns, 'link', 'set', 'lo', 'up'],
    ['-n', core.ns, 'link', 'add', br, 'type', 'bridge'],
    ['-n', core.ns, 'addr', 'add', `${CORE_IP}/24`, 'dev', br],
    ['-n', core.ns, 'link', 'set', br, 'up'],
  ]
  pops.forEach((p, i) => {
    const a = `vc${i}${tag}` // core side, on the bridge
    const b = `vp${i}${tag}` // POP side
    steps.push(
      ['link', 'add', a, 'type', 'veth', 'peer', 'name', b],
      ['link', 'set', a, 'netns', core.ns],
      ['link', 'set', b, 'netns', p.ns],
      ['-n', core.ns, 'link', 'set', a, 'master', br],
      ['-n', core.ns, 'link', 'set', a, 'up'],
      ['-n', p.ns, 'addr', 'add', `${p.ip}/24`, 'dev', b],
      ['-n', p.ns, 'link', 'set', 'lo', 'up'],
      ['-n', p.ns, 'link', 'set', b, 'up'],
    )
  })
  for (const ns of [core.ns, ...pops.map((p) => p.ns)]) {
    const r = ip('netns', 'add', ns)
    if (!r.ok) {
      close()
      return `cannot make network namespaces here (ip netns add: ${r.err})`
    }
    made.push(ns)
  }
  for (const s of steps) {
    const r = ip(...s)
    if (!r.ok) {
      close()
      return `cannot make network namespaces here (ip ${s.join(' ')}: ${r.err})`
    }
  }
  return { tag, core, pops, close }
}

/** A command line, run inside namespace `ns` (null: here). */
export function inNs(ns: string | null, cmd: string, args: string[]): [string, string[]] {
  return ns ? ['ip', ['netns', 'exec', ns, cmd, ...args]] : [cmd, args]
}

/**
 * POP ids whose hourly slot starts at least `clearMs` from now: during a run shorter than
 * that, a regular (hourly) pull of theirs would be a defect, not a coincidence.
 */
export function popIdsClearOfSlots(n: number, prefix: string, clearMs: number): string[] {
  const ids: string[] = []
  const now = Date.now()
  for (let i = 0; ids.length < n; i++) {
    if (i > 10_000) throw new Error('no POP id clear of its slot')
    const id = `${prefix}-${randomBytes(2).toString('hex')}`
    if (nextRegularRun(now, id, {}, () => 0) - now >= clearMs && !ids.includes(id)) ids.push(id)
  }
  return ids
}

/** A POP prepared on disk: its key, certificate, rsync password and an empty replica store. */
export interface PopSetup {
  id: string
  dir: string
  /** The rsync user the registry gave it. */
  rsyncUser: string
}

/** A core prepared on disk (nothing running yet). */
export interface CoreSetup {
  /** The work folder (core, POPs, logs). */
  dir: string
  coreDir: string
  /** A vault API key of an active subscription (Bearer of the credentials API). */
  apiKey: string
  pops: PopSetup[]
  /** The bearer token of every /metrics here. */
  metricsToken: string
  metricsTokenFile: string
}

/**
 * A core on disk the way an operator makes one, through the same library calls as the CLI:
 * CA (server certificate with `serverSans`), store, a customer with an active subscription,
 * a vault and its API key (`vault create`, `vault key`), and the POPs enrolled
 * (`pop init`, `ca issue-pop`, `core pop add`: registry, rsync password) with `allow`
 * their source address. `popStores`: also make each POP's empty replica store (trusting
 * the core's key), what `pop run` needs.
 */
export async function prepareCore(opts: {
  dir: string
  popIds: string[]
  allow: (i: number) => string
  serverSans?: string[]
  popStores?: boolean
  /** Keys and certificates made this many at a time. Default 1. */
  concurrency?: number
  /** Told the number of POPs with a certificate so far. */
  onProgress?: (done: number) => void
}): Promise<CoreSetup> {
  const { dir } = opts
  const coreDir = join(dir, 'core')
  mkdirSync(coreDir, { recursive: true })
  await initCa(coreDir, { serverSans: opts.serverSans ?? [] })
  const core = await openCore({ dataDir: coreDir, protection: 'best-effort' })
  let apiKey: string
  const pops: PopSetup[] = []
  try {
    const now = nowMicros()
    core.db
      .prepare(
        "INSERT INTO customers (id, level, email, created_at, updated_at) VALUES ('bench', 1, 'bench@example.test', ?, ?)",
      )
      .run(now, now)
    core.db
      .prepare(
        "INSERT INTO subscriptions (id, customer_id, status, currency_code, created_at, updated_at) VALUES ('sub_bench', 'bench', 'active', 'EUR', ?, ?)",
      )
      .run(now, now)
    const vault = core.credentials.createVault({
      customerId: 'bench',
      subscriptionId: 'sub_bench',
      name: 'propagation',
      actor: 'bench',
    })
    apiKey = core.credentials.createApiKey(vault.id, { actor: 'bench' }).key
    const trust = core.store.publicKey
    if (!trust) throw new Error('the core store has no signing key')
    // keys and CSRs (openssl processes) `concurrency` at a time; the CA signs one at a time
    // (`openssl ca` keeps its serial in a file: two at once fail)
    const issued: Array<{ popDir: string; certPem: string }> = []
    let nextI = 0
    let made = 0
    let ca: Promise<unknown> = Promise.resolve()
    const worker = async () => {
      for (let i = nextI++; i < opts.popIds.length; i = nextI++) {
        const id = opts.popIds[i]!
        const popDir = join(dir, 'pops', id)
        mkdirSync(popDir, { recursive: true })
        const { csrPem } = await popInit(popDir, id)
        const signed = ca.then(() => issuePopCert(coreDir, { popId: id, csrPem }))
        ca = signed.catch(() => {})
        const { certPem } = await signed
        const pp = popAuthPaths(popDir)
        writeFileSync(pp.cert, certPem)
        copyFileSync(caPaths(coreDir).cert, pp.ca)
        issued[i] = { popDir, certPem }
        opts.onProgress?.(++made)
      }
    }
    await Promise.all(Array.from({ length: opts.concurrency ?? 1 }, worker))
    for (const [i, id] of opts.popIds.entries()) {
      const { popDir, certPem } = issued[i]!
      const { rsync } = enrolPop(
        core.db,
        coreDir,
        { id, certPem, allowlist: [opts.allow(i)] },
        { actor: 'bench' },
      )
      writeFileSync(popRsyncPasswordFile(popDir), rsync.password + '\n', { mode: 0o600 })
      if (opts.popStores) {
        const s = await BlobStore.init({
          dataDir: popDir,
          role: 'pop',
          trustKeys: [trust],
          protection: 'best-effort',
          onWarning: () => {},
        })
        await s.close()
      }
      pops.push({ id, dir: popDir, rsyncUser: rsync.user })
    }
  } finally {
    await core.close()
  }
  const metricsToken = randomBytes(24).toString('base64url')
  const metricsTokenFile = join(dir, 'metrics.token')
  writeFileSync(metricsTokenFile, metricsToken + '\n', { mode: 0o600 })
  return { dir, coreDir, apiKey, pops, metricsToken, metricsTokenFile }
}

/** A work folder under the temp dir; `remove()` unseals (chattr) and deletes it. */
export function workDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  return {
    dir,
    remove() {
      try {
        execFileSync('chattr', ['-R', '-i', '-a', dir], { stdio: 'ignore' })
      } catch {
        // nothing sealed, or entries that take no attributes: the rest is unsealed anyway
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A long-running child: its output goes to a log file and is scanned for a ready line. */
export interface Proc {
  name: string
  child: ChildProcess
  pid: number
  logFile: string
  /** Output so far (stdout + stderr), for readiness and evidence. */
  output(): string
  exited: Promise<number | null>
}

/** The processes of one run, stopped together (SIGTERM, then SIGKILL after 10 s). */
export class Procs {
  readonly all: Proc[] = []
  constructor(private readonly logDir: string) {
    mkdirSync(logDir, { recursive: true })
  }

  /**
   * Starts `cmd args` (inside `ns` when given) and waits until its output matches `ready`
   * (or, with a function, until it returns true) within `ms`; an early exit is an error
   * that quotes the log's tail.
   */
  async start(
    name: string,
    ns: string | null,
    cmd: string,
    args: string[],
    ready: RegExp | ((p: Proc) => boolean),
    opts: { env?: NodeJS.ProcessEnv; ms?: number } = {},
  ): Promise<Proc> {
    const [c, a] = inNs(ns, cmd, args)
    const child = spawn(c, a, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env },
    })
    const logFile = join(this.logDir, `${name}.log`)
    const log = createWriteStream(logFile)
    let out = ''
    const onData = (d: Buffer) => {
      const s = d.toString()
      out += s
      if (out.length > 4_000_000) out = out.slice(-2_000_000)
      log.write(d)
    }
    child.stdout!.on('data', onData)
    child.stderr!.on('data', onData)
    const exited = new Promise<number | null>((r) =>
      child.once('exit', (code) => {
        log.end()
        r(code)
      }),
    )
    const p: Proc = { name, child, pid: child.pid ?? -1, logFile, output: () => out, exited }
    this.all.push(p)
    let gone = false
    void exited.then(() => (gone = true))
    const end = Date.now() + (opts.ms ?? 60_000)
    for (;;) {
      if (typeof ready === 'function' ? ready(p) : ready.test(out)) return p
      if (gone)
        throw new Error(`${name} exited (${child.exitCode}) before it was ready: ${tail(out)}`)
      if (Date.now() > end) throw new Error(`${name} not ready within the bound: ${tail(out)}`)
      await sleep(50)
    }
  }

  /** SIGTERM to every process, SIGKILL to those still there after 10 s. */
  async stopAll(): Promise<void> {
    const live = this.all.splice(0).reverse()
    for (const p of live) p.child.kill('SIGTERM')
    await Promise.race([Promise.all(live.map((p) => p.exited)), sleep(10_000)])
    for (const p of live)
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL')
  }
}

function tail(s: string): string {
  return s.trim().split('\n').slice(-5).join('\n')
}

/** The core's three processes and the POPs' `pop run`, started in order. */
export interface Running {
  procs: Procs
  coreServe: Proc
  popApi: Proc
  rsyncd: Proc | null
  pops: Proc[]
  coreUrl: string
  popApiUrl: string
  lookupUrls: string[]
}

const CHILD_ENV = { CLAVITOR_PROTECTION: 'best-effort', CLAVITOR_LOG_LEVEL: 'info' }

/**
 * Starts `core serve` (credentials API; its key and address rate limits raised for the write
 * load: not what is measured), `core pop-api` (mTLS, default limits), and with `pops` the
 * rsync daemon (`core rsyncd-config` from the registry) and one `pop run --wait <waitS>`
 * for each of the first `pops.length` POPs of the setup, in its namespace. `coreNs`/`popNs` null: loopback, no namespaces.
 */
export async function startAll(
  setup: CoreSetup,
  o: {
    coreNs: string | null
    coreIp: string
    pops?: Array<{ ns: string | null; ip: string }>
    waitS?: number
    popApiArgs?: string[]
    /** Ports of `core serve` and `core pop-api` (defaults 8080, 8443: inside a namespace). */
    ports?: { api: number; popApi: number }
  },
): Promise<Running> {
  const apiPort = o.ports?.api ?? CORE_API_PORT
  const popApiPort = o.ports?.popApi ?? POP_API_PORT
  const procs = new Procs(join(setup.dir, 'logs'))
  const { coreDir } = setup
  try {
    const coreServe = await procs.start(
      'core-serve',
      o.coreNs,
      CLI,
      [
        'core',
        'serve',
        '--data',
        coreDir,
        '--listen',
        `${o.coreIp}:${apiPort}`,
        '--rate-limit-key',
        '1000000',
        '--rate-limit-ip',
        '1000000',
        '--reconcile-interval-ms',
        '0',
        '--metrics-token-file',
        setup.metricsTokenFile,
      ],
      /core listening/,
      { env: CHILD_ENV },
    )
    const popApi = await procs.start(
      'pop-api',
      o.coreNs,
      CLI,
      [
        'core',
        'pop-api',
        '--data',
        coreDir,
        '--listen',
        `${o.coreIp}:${popApiPort}`,
        ...(o.popApiArgs ?? []),
      ],
      /POP API listening/,
      { env: CHILD_ENV },
    )
    let rsyncd: Proc | null = null
    const pops: Proc[] = []
    const lookupUrls: string[] = []
    if (o.pops?.length) {
      const conf = join(setup.dir, 'rsyncd.conf')
      const rlog = join(setup.dir, 'logs', 'rsyncd-daemon.log')
      execFileSync(CLI, [
        'core',
        'rsyncd-config',
        '--data',
        coreDir,
        '--address',
        o.coreIp,
        '--port',
        String(RSYNC_PORT),
        '--pid-file',
        join(setup.dir, 'rsyncd.pid'),
        '--log-file',
        rlog,
        '--out',
        conf,
      ])
      rsyncd = await procs.start(
        'rsyncd',
        o.coreNs,
        'rsync',
        ['--daemon', '--no-detach', `--config=${conf}`],
        () => readFileSync(rlog, 'utf8').includes(`listening on port ${RSYNC_PORT}\n`),
      )
      for (const [i, at] of o.pops.entries()) {
        const pop = setup.pops[i]!
        const p = await procs.start(
          `pop-${pop.id}`,
          at.ns,
          CLI,
          [
            'pop',
            'run',
            '--data',
            pop.dir,
            '--id',
            pop.id,
            '--core',
            `https://${o.coreIp}:${popApiPort}`,
            '--rsync-source',
            `rsync://${pop.rsyncUser}@${o.coreIp}:${RSYNC_PORT}/clavitor-store/`,
            '--listen',
            `${at.ip}:${LOOKUP_PORT}`,
            '--wait',
            String(o.waitS ?? 45),
            '--metrics-token-file',
            setup.metricsTokenFile,
          ],
          /POP agent running/,
          { env: CHILD_ENV },
        )
        pops.push(p)
        lookupUrls.push(`http://${at.ip}:${LOOKUP_PORT}`)
      }
    }
    return {
      procs,
      coreServe,
      popApi,
      rsyncd,
      pops,
      coreUrl: `http://${o.coreIp}:${apiPort}`,
      popApiUrl: `https://${o.coreIp}:${popApiPort}`,
      lookupUrls,
    }
  } catch (err) {
    await procs.stopAll()
    throw err
  }
}

/** What the probe (scripts/bench/propagation-probe.ts) measured; see its header. */
export interface ProbeReport {
  pops: string[]
  measured: Array<{
    p0: string
    /** ms from the 201 to the bytes served, per POP (null: not seen before the give-up). */
    ms: Array<number | null>
    /** The slowest POP (null when any missed). */
    all: number | null
  }>
  load: { rate: number; sent: number; ok: number; failed: number; seconds: number }
  lookups: { requests: number; pollMs: number }
  /** Each POP's /metrics lines of interest, before the first registration and after the last check. */
  metrics: { before: PopMetrics[]; after: PopMetrics[] }
  /** Each POP's /healthz after the last check. */
  health: Array<Record<string, unknown>>
  /** Wall time (µs epoch) of the "before" and "after" metrics. */
  window: { fromUs: number; toUs: number }
}

export interface PopMetrics {
  /** clavitor_sync_runs_total by trigger. */
  runs: Record<string, number>
  /** clavitor_sync_blobs_total. */
  blobs: number
}

/** Runs the probe inside `ns` against the running system; resolves with its report. */
export async function runProbe(
  setup: CoreSetup,
  run: Running,
  ns: string | null,
  o: {
    measured: number
    everyMs: number
    loadRate: number
    pollMs: number
    giveUpMs: number
  },
): Promise<ProbeReport> {
  const args = [
    PROBE,
    '--core',
    run.coreUrl,
    '--key-env',
    'PROBE_API_KEY',
    '--metrics-token-env',
    'PROBE_METRICS_TOKEN',
    '--measured',
    String(o.measured),
    '--every-ms',
    String(o.everyMs),
    '--load-rate',
    String(o.loadRate),
    '--poll-ms',
    String(o.pollMs),
    '--give-up-ms',
    String(o.giveUpMs),
    ...run.lookupUrls.flatMap((u) => ['--pop', u]),
  ]
  const [c, a] = inNs(ns, TS, args)
  const child = spawn(c, a, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PROBE_API_KEY: setup.apiKey, PROBE_METRICS_TOKEN: setup.metricsToken },
  })
  let out = ''
  let err = ''
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString()
    if (process.env.PROBE_VERBOSE) process.stderr.write(d)
  })
  const code = await new Promise<number | null>((r) => child.once('exit', r))
  if (code !== 0) throw new Error(`probe exited ${code}: ${tail(err)}`)
  return JSON.parse(out) as ProbeReport
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[i]!
}
