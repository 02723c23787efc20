// npm run bench:lookups [-- --n 100000,1000000 --duration 10 --connections 32 --soak-seconds 600]
//
// The POP's latest-WL3 lookup (GET /api/v1/wl3/{random P0}) against nginx serving the same
// .cla files, side by side in one run, at each N of --n:
//   - POP, no rate limit: scripts/bench/pop-serve.ts, one Node process (the app of
//     `pop run`: buildPopApp over openPop, no logger), against nginx with
//     `worker_processes 1`, `sendfile on`, `access_log off`, serving the store root by path;
//   - POP, rate limits on: the app's default per-address limit, with `--trust-proxy
//     loopback` and each request's X-Forwarded-For drawn from --addresses client addresses
//     (many vault devices, none over its budget), against the same nginx figures;
//   - with --soak-seconds S: the rate-limited POP under the same load for S seconds, its
//     RSS (VmRSS) sampled every --sample-seconds: first, min, max, last.
// Both sides get one process and the same load: autocannon in this process, --connections
// connections, --warmup s then --duration s, a P0 drawn at random per request over all N,
// every file read once before the first row (the same warm page cache for both).
//
// The store: a POP data folder filled by the real pull (a core store of N blobs of 2 KiB,
// one P0 each, by concurrent puts; then the POP's bootstrap from it over a local-folder
// rsync), on an ext4 image of its own under --cache-dir, kept for the next run
// (`n<N>.img` plus `n<N>.ready` once complete; --rebuild makes it anew, --drop-cache
// deletes it at the end). Needs root (mount); nginx on PATH.
// With --fastify-only the POP runs without its fast path (pop-agent/fast-lookups.ts): the
// figures of before it, in the same run's conditions.
// A benchmark, not a test: figures go to docs/performance.md ("Lookups against nginx").
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { Command, Option } from 'commander'
import Fastify from 'fastify'
import { feedClientFor, openPop } from '../../lib/pop.js'
import { pullOnce } from '../../lib/pop-sync/pull.js'
import { BlobStore } from '../../lib/store/index.js'
import { syncRoutes } from '../../server/routes/sync.js'
import { freePort, procCpu, waitPort } from './bench-env.js'

// the POP listens once its prefetch filled the cache: a cache that holds 1,000,000 answers
// takes minutes to fill
const POP_READY_MS = 20 * 60_000

const program = new Command()
  .name('bench:lookups')
  .addOption(new Option('--n <list>', 'P0s (blobs) per run, comma-separated').default('100000'))
  .addOption(new Option('--duration <s>', 'measured seconds per load run').default('10'))
  .addOption(new Option('--warmup <s>', 'warm-up seconds before each load run').default('2'))
  .addOption(new Option('--connections <c>', 'autocannon connections').default('32'))
  .addOption(
    new Option('--addresses <k>', 'client addresses of the rate-limited row').default('1000'),
  )
  .addOption(
    new Option('--soak-seconds <s>', 'RSS soak of the rate-limited POP (0 = none)').default('0'),
  )
  .addOption(new Option('--sample-seconds <s>', 'RSS sample period in the soak').default('10'))
  .addOption(new Option('--max-bytes <n>', "the POP's lookup cache (default: the POP's own)"))
  .addOption(
    new Option('--cache-dir <dir>', 'where built stores are kept').default(
      '/var/tmp/clavitor-bench-lookups',
    ),
  )
  .addOption(new Option('--rebuild', 'build the store again even if one is cached'))
  .addOption(new Option('--drop-cache', 'delete the built store at the end'))
  .addOption(
    new Option('--keep-mounted', 'leave the store mounted (its page cache warm) for the next run'),
  )
  .addOption(new Option('--build-only', 'build (or find) the stores, measure nothing'))
  .addOption(new Option('--cpu-prof <dir>', "write each POP process's V8 CPU profile there"))
  .addOption(
    new Option('--fastify-only', 'the POP without its fast path (Fastify answers every lookup)'),
  )
  .parse()
const o = program.opts<{
  n: string
  duration: string
  warmup: string
  connections: string
  addresses: string
  soakSeconds: string
  sampleSeconds: string
  maxBytes?: string
  cacheDir: string
  rebuild?: boolean
  dropCache?: boolean
  keepMounted?: boolean
  buildOnly?: boolean
  cpuProf?: string
  fastifyOnly?: boolean
}>()
const SIZES = o.n.split(',').map((x) => {
  const v = Number(x)
  if (!Number.isInteger(v) || v < 1) {
    process.stderr.write(`bench:lookups: --n: ${x} is not a positive integer\n`)
    process.exit(2)
  }
  return v
})
const DURATION = Number(o.duration)
const WARMUP = Number(o.warmup)
const CONNECTIONS = Number(o.connections)
const ADDRESSES = Number(o.addresses)
const SOAK = Number(o.soakSeconds)
const SAMPLE = Number(o.sampleSeconds)

const REPO = new URL('../../', import.meta.url).pathname
const TS = join(REPO, 'scripts/clavitor-ts')
const log = (s: string) => process.stderr.write(`bench:lookups: ${s}\n`)
const now = () => process.hrtime.bigint()
const secs = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: 'ignore' })

interface BuiltStore {
  /** The POP's data folder. */
  popDir: string
  /** Seconds the build took (when it was built in an earlier run: that run's). */
  build_s: number
  cached: boolean
  close(): void
}

/** Mounts (building first when needed) the ext4 image holding a POP of `n` P0s. */
async function ensureStore(n: number): Promise<BuiltStore> {
  mkdirSync(o.cacheDir, { recursive: true })
  const img = join(o.cacheDir, `n${n}.img`)
  const ready = join(o.cacheDir, `n${n}.ready`)
  const mnt = join(o.cacheDir, `n${n}.mnt`)
  mkdirSync(mnt, { recursive: true })
  let mounted = true
  try {
    sh('mountpoint', ['-q', mnt])
  } catch {
    mounted = false
  }
  if (mounted && (o.rebuild || !existsSync(ready))) {
    sh('umount', [mnt])
    mounted = false
  }
  const close = () => {
    if (o.keepMounted && !o.dropCache) return
    for (let i = 0; ; i++) {
      try {
        sh('umount', [mnt])
        return
      } catch {
        if (i === 20) return sh('umount', ['-l', mnt])
        sh('sleep', ['0.25'])
      }
    }
  }
  if (existsSync(ready) && !o.rebuild) {
    if (!mounted) sh('mount', ['-o', 'loop', img, mnt])
    const meta = JSON.parse(readFileSync(ready, 'utf8')) as { build_s: number }
    log(`N=${n}: using the store built earlier (${img})`)
    return { popDir: join(mnt, 'pop'), build_s: meta.build_s, cached: true, close }
  }
  rmSync(ready, { force: true })
  rmSync(img, { force: true })
  // two stores (core and POP), each a file and a p0 folder per blob: ~9 KiB per blob each
  const gib = Math.ceil(2 + (n * 2 * 9) / 1024 ** 2)
  sh('truncate', ['-s', `${gib}G`, img])
  sh('mkfs.ext4', ['-q', '-F', '-i', '4096', '-E', 'lazy_itable_init=0,lazy_journal_init=0', img])
  sh('mount', ['-o', 'loop', img, mnt])
  log(`N=${n}: building on a fresh ${gib} GiB ext4 image (${img})`)
  const t0 = now()
  const core = await BlobStore.init({
    dataDir: join(mnt, 'core'),
    protection: 'best-effort',
    onWarning: () => {},
  })
  for (let done = 0; done < n;) {
    const k = Math.min(4096, n - done)
    await Promise.all(
      Array.from({ length: k }, () => core.put(randomBytes(16).toString('hex'), randomBytes(2048))),
    )
    done += k
    if (done % 102400 < 4096) log(`N=${n}: ${done} core blobs (${secs(t0).toFixed(0)} s)`)
  }
  const core_s = secs(t0)
  core.db.prepare("INSERT INTO pops (id, created_at) VALUES ('bench-pop', 1)").run()
  const app = Fastify()
  app.addHook('onRequest', async (req) => {
    req.popId = 'bench-pop'
  })
  await app.register(syncRoutes, { core: { db: core.db, store: core } })
  const coreUrl = await app.listen({ host: '127.0.0.1', port: 0 })
  const popDir = join(mnt, 'pop')
  const pop = await BlobStore.init({
    dataDir: popDir,
    role: 'pop',
    trustKeys: [core.publicKey!],
    protection: 'best-effort',
    onWarning: () => {},
  })
  const t1 = now()
  const r = await pullOnce({
    popId: 'bench-pop',
    db: pop.db,
    store: pop,
    feed: feedClientFor({ dataDir: popDir, popId: 'bench-pop', coreUrl }),
    rsync: { source: core.root + '/' },
    stagingDir: join(popDir, 'sync-staging'),
  })
  const pop_s = secs(t1)
  await pop.close()
  await app.close()
  await core.close()
  if (r.sealed !== n) throw new Error(`the POP sealed ${r.sealed} blobs, expected ${n}`)
  const build_s = secs(t0)
  log(`N=${n}: core ${core_s.toFixed(0)} s, POP bootstrap ${pop_s.toFixed(0)} s`)
  writeFileSync(ready, JSON.stringify({ n, build_s, core_s, pop_s, at: new Date().toISOString() }))
  return { popDir, build_s, cached: false, close }
}

interface Load {
  rps: number
  p50: number
  p99: number
  bad: number
  total: number
  /** CPU µs per answer of the server's serving process (the POP process, nginx's worker). */
  cpuUs?: number
}

function cannon(
  port: number,
  duration: number,
  pick: () => string,
  headers?: () => Record<string, string>,
): Promise<Load> {
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `http://127.0.0.1:${port}`,
        connections: CONNECTIONS,
        duration,
        requests: [
          {
            setupRequest: (req: Record<string, unknown>) => {
              req.path = pick()
              if (headers) req.headers = headers()
              return req
            },
          },
        ],
      } as autocannon.Options,
      (err, r) =>
        err
          ? reject(err)
          : resolve({
              rps: r.requests.average,
              p50: r.latency.p50,
              p99: r.latency.p99,
              bad: r.errors + r.non2xx,
              total: r.requests.total,
            }),
    )
  })
}

async function load(
  port: number,
  server: number,
  pick: () => string,
  headers?: () => Record<string, string>,
): Promise<Load> {
  await cannon(port, WARMUP, pick, headers)
  const c0 = procCpu(server)
  const l = await cannon(port, DURATION, pick, headers)
  return { ...l, cpuUs: ((procCpu(server) - c0) * 1e6) / l.total }
}

/** nginx's worker: the master's one child. */
function nginxWorker(master: number): number {
  const out = execFileSync('pgrep', ['-P', String(master)], { encoding: 'utf8' }).trim()
  return Number(out.split('\n')[0])
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) : NaN
}

function startPop(popDir: string, port: number, rateLimited: boolean): ChildProcess {
  const args = [join(REPO, 'scripts/bench/pop-serve.ts'), popDir, String(port)]
  if (rateLimited) args.push('--rate-limit', '--trust-proxy', 'loopback')
  if (o.maxBytes) args.push('--max-bytes', o.maxBytes)
  if (o.fastifyOnly) args.push('--fastify-only')
  if (o.cpuProf) {
    // the same process scripts/clavitor-ts runs, with V8's profiler on
    const loader = `file://${join(REPO, 'node_modules/tsx/dist/loader.mjs')}`
    return spawn(
      process.execPath,
      ['--cpu-prof', `--cpu-prof-dir=${o.cpuProf}`, '--import', loader, ...args],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    )
  }
  return spawn(TS, args, { stdio: ['ignore', 'ignore', 'inherit'] })
}

async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return
  const gone = new Promise((r) => c.once('exit', r))
  c.kill('SIGTERM')
  await gone
}

function startNginx(root: string, port: number, dir: string): ChildProcess {
  mkdirSync(dir, { recursive: true })
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      'user root;',
      'worker_processes 1;',
      'daemon off;',
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log;`,
      'events { worker_connections 1024; }',
      'http {',
      '  access_log off;',
      '  sendfile on;',
      '  types { application/octet-stream cla; }',
      `  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;`,
      `  server { listen 127.0.0.1:${port}; root ${root}; location / { } }`,
      '}',
    ].join('\n') + '\n',
  )
  return spawn('nginx', ['-c', join(dir, 'nginx.conf'), '-p', dir], {
    stdio: ['ignore', 'ignore', 'inherit'],
  })
}

interface Soak {
  seconds: number
  samples: number[]
  load: Load
}

interface Figures {
  n: number
  build_s: number
  cached: boolean
  load1: number
  pop: Load
  nginx: Load
  popLimited: Load
  soak?: Soak
}

async function benchOne(n: number): Promise<Figures | null> {
  const st = await ensureStore(n)
  const children: ChildProcess[] = []
  try {
    if (o.buildOnly) return null
    // every P0 here has one blob: its latest is the one file in its folder
    const ix = await BlobStore.open({ dataDir: st.popDir, onWarning: () => {} })
    const p0s: string[] = []
    const files: string[] = []
    for (const f of ix.index.files()) {
      p0s.push(f.path.split('/')[1]!)
      files.push('/' + f.path)
    }
    const root = ix.root
    await ix.close()
    // both sides meet the same warm page cache: every file (and its folders) read once
    log(`N=${n}: reading every file once (page cache)`)
    const tw = now()
    for (const f of files) readFileSync(join(root, f))
    // and the POP's index, which it reads on every miss (nginx's equivalent, the dentries, is warm)
    readFileSync(join(st.popDir, 'meta.db'))
    log(`N=${n}: read in ${secs(tw).toFixed(0)} s`)
    if (p0s.length !== n) throw new Error(`the store holds ${p0s.length} blobs, expected ${n}`)
    const urls = p0s.map((p) => `/api/v1/wl3/${p}`)
    const rnd = (a: string[]) => () => a[Math.floor(Math.random() * a.length)]!
    const addrs = Array.from(
      { length: ADDRESSES },
      (_, i) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
    )
    const xff = () => ({ 'x-forwarded-for': addrs[Math.floor(Math.random() * addrs.length)]! })
    const load1 = loadavg()[0]!

    const popPort = await freePort()
    let pop = startPop(st.popDir, popPort, false)
    children.push(pop)
    await waitPort(popPort, POP_READY_MS, pop)
    log(`N=${n}: POP, no rate limit (${WARMUP} + ${DURATION} s)`)
    const popLoad = await load(popPort, pop.pid!, rnd(urls))
    await stop(pop)

    const ngPort = await freePort()
    const ngDir = join(o.cacheDir, `nginx-${process.pid}`)
    const nginx = startNginx(root, ngPort, ngDir)
    children.push(nginx)
    await waitPort(ngPort)
    log(`N=${n}: nginx (${WARMUP} + ${DURATION} s)`)
    const ngLoad = await load(ngPort, nginxWorker(nginx.pid!), rnd(files))
    await stop(nginx)
    rmSync(ngDir, { recursive: true, force: true })

    const rlPort = await freePort()
    pop = startPop(st.popDir, rlPort, true)
    children.push(pop)
    await waitPort(rlPort, POP_READY_MS, pop)
    log(`N=${n}: POP, rate limits on, ${ADDRESSES} addresses (${WARMUP} + ${DURATION} s)`)
    const rlLoad = await load(rlPort, pop.pid!, rnd(urls), xff)
    let soak: Soak | undefined
    if (SOAK > 0) {
      log(`N=${n}: soak, ${SOAK} s, RSS every ${SAMPLE} s`)
      const samples = [rssKiB(pop.pid!)]
      const timer = setInterval(() => samples.push(rssKiB(pop.pid!)), SAMPLE * 1000)
      const l = await cannon(rlPort, SOAK, rnd(urls), xff)
      clearInterval(timer)
      samples.push(rssKiB(pop.pid!))
      soak = { seconds: SOAK, samples, load: l }
    }
    await stop(pop)
    return {
      n,
      build_s: st.build_s,
      cached: st.cached,
      load1,
      pop: popLoad,
      nginx: ngLoad,
      popLimited: rlLoad,
      ...(soak ? { soak } : {}),
    }
  } finally {
    for (const c of children) await stop(c)
    st.close()
    if (o.dropCache) {
      rmSync(join(o.cacheDir, `n${n}.img`), { force: true })
      rmSync(join(o.cacheDir, `n${n}.ready`), { force: true })
    }
  }
}

const fmt = (l: Load) =>
  `${Math.round(l.rps)} req/s, p50 ${l.p50} ms, p99 ${l.p99} ms${l.cpuUs !== undefined ? `, ${l.cpuUs.toFixed(0)} µs CPU/req` : ''}${l.bad ? `, ${l.bad} bad` : ''}`
const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`

function printTable(results: Figures[]): void {
  const rows: Array<[string, ...string[]]> = [
    ['', ...results.map((r) => `N = ${r.n.toLocaleString('en-US')}`)],
    [
      'store build (core puts + POP bootstrap)',
      ...results.map((r) => `${r.build_s.toFixed(0)} s${r.cached ? ' (cached)' : ''}`),
    ],
    ['load (1 min) before the runs', ...results.map((r) => r.load1.toFixed(2))],
    ['POP, no rate limit', ...results.map((r) => fmt(r.pop))],
    ['nginx, 1 worker, sendfile, same files', ...results.map((r) => fmt(r.nginx))],
    [
      '  POP / nginx (req/s; p99)',
      ...results.map(
        (r) => `**${(r.pop.rps / r.nginx.rps).toFixed(2)}**; ${r.pop.p99} vs ${r.nginx.p99} ms`,
      ),
    ],
    [`POP, rate limits on (${ADDRESSES} addresses)`, ...results.map((r) => fmt(r.popLimited))],
    [
      '  POP rate-limited / nginx (req/s; p99)',
      ...results.map(
        (r) =>
          `**${(r.popLimited.rps / r.nginx.rps).toFixed(2)}**; ${r.popLimited.p99} vs ${r.nginx.p99} ms`,
      ),
    ],
  ]
  if (results.some((r) => r.soak)) {
    rows.push([
      'soak: POP RSS first / min / max / last',
      ...results.map((r) => {
        const s = r.soak?.samples
        if (!s) return ''
        return `${mib(s[0]!)} / ${mib(Math.min(...s))} / ${mib(Math.max(...s))} / ${mib(s[s.length - 1]!)} (${s.length} samples, ${r.soak!.seconds} s)`
      }),
    ])
    rows.push(['soak: load', ...results.map((r) => (r.soak ? fmt(r.soak.load) : ''))])
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  const line = (r: string[]) => '| ' + r.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |'
  process.stdout.write(line(rows[0]!) + '\n')
  process.stdout.write('| ' + widths.map((w) => '-'.repeat(w)).join(' | ') + ' |\n')
  for (const r of rows.slice(1)) process.stdout.write(line(r) + '\n')
  process.stdout.write(
    `\n(${CONNECTIONS} connections, ${WARMUP} s warm-up then ${DURATION} s per row; one process each side; ${cpus().length} cores, ${(totalmem() / 1024 ** 3).toFixed(0)} GiB; ${new Date().toISOString()})\n`,
  )
  for (const r of results)
    if (r.soak)
      process.stdout.write(
        `RSS samples at N=${r.n} (MiB): ${r.soak.samples.map((k) => (k / 1024).toFixed(0)).join(' ')}\n`,
      )
}

const results: Figures[] = []
for (const n of SIZES) {
  const f = await benchOne(n)
  if (f) {
    results.push(f)
    printTable(results)
  }
}
