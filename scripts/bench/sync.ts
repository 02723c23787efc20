// npm run bench:sync [-- --n 100000 --small 10000 --duration 10 --connections 32]
//
// For N = --small (10,000) and N = --n (100,000): builds a core store of N blobs of 2 KiB,
// syncs a POP from it, adds 100 new blobs and measures, in the same run and on the same
// machine, with the POP and every baseline reaching the core store the same way (an rsync
// daemon on 127.0.0.1 with the generated config, TCP_NODELAY; `--transport local`: the
// folder itself) and the work folder on a fresh loop-mounted ext4 (`--fs tmp`: tmpdir):
//   - the POP's incremental pull end to end (feed, rsync --files-from, verify, seal, index,
//     cursor) against plain `rsync -a` of the whole tree (into a mirror that has the first
//     N) and against bare `rsync --files-from` of the same 100 files;
//   - the initial full sync (a bootstrap from N >= 5000: whole-tree rsync, bulk verification
//     against the signed replication log, bulk seal and index) in blobs/s against plain
//     `rsync -a` of the tree; with --initial-only, also against `rsync -a` then `sync`,
//     with the CPU seconds of each and the bootstrap's steps;
//   - POP lookups/s and p99 for the latest WL3 of random P0s against nginx serving the
//     same files statically (autocannon for both; one server process each).
// A benchmark, not a test: figures go to docs/performance.md ("Sync").
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { Command, Option } from 'commander'
import Fastify from 'fastify'
import { execa } from 'execa'
import { feedClientFor, openPop, popPaths } from '../../lib/pop.js'
import { pullOnce } from '../../lib/pop-sync/pull.js'
import { BlobStore } from '../../lib/store/index.js'
import { quickCheck } from '../../lib/pop-sync/repair.js'
import { syncRoutes } from '../../server/routes/sync.js'
import { freePort, makeWorkFs, selfCpu, startRsyncd, waitPort, type Rsyncd } from './bench-env.js'

const program = new Command()
  .name('bench:sync')
  .addOption(new Option('--n <n>', 'blobs in the large run').default('100000'))
  .addOption(new Option('--small <n>', 'blobs in the small run (0 = skip)').default('10000'))
  .addOption(new Option('--new <n>', 'new blobs for the incremental pull').default('100'))
  .addOption(new Option('--duration <s>', 'seconds per lookup load run').default('10'))
  .addOption(new Option('--connections <c>', 'autocannon connections').default('32'))
  .addOption(new Option('--keep', 'keep the work folder'))
  .addOption(
    new Option(
      '--page-size <list>',
      'POP feed page size(s), comma-separated (default: the POP default); more than one, or --initial-only: only the initial sync, page by page at each size (no bootstrap), alternating with plain rsync -a',
    ),
  )
  .addOption(
    new Option(
      '--initial-only',
      'only the initial full sync: plain rsync -a, rsync -a then sync, and the POP bootstrap (or --page-size)',
    ),
  )
  .addOption(new Option('--rounds <n>', 'rounds per page size with --initial-only').default('2'))
  .addOption(
    new Option('--transport <t>', 'how the POP and the baselines reach the core store')
      .choices(['daemon', 'local'])
      .default('daemon'),
  )
  .addOption(
    new Option('--fs <kind>', 'work folder: a fresh loop-mounted ext4 (root) or under tmpdir')
      .choices(['loop', 'tmp'])
      .default('loop'),
  )
  .parse()
const o = program.opts<{
  n: string
  small: string
  new: string
  duration: string
  connections: string
  keep?: boolean
  pageSize?: string
  initialOnly?: boolean
  rounds: string
  transport: 'daemon' | 'local'
  fs: 'loop' | 'tmp'
}>()
const PAGE_SIZES = (o.pageSize ?? '')
  .split(',')
  .filter((x) => x !== '')
  .map((x) => {
    const v = Number(x)
    if (!Number.isInteger(v) || v < 1 || v > 5000) {
      process.stderr.write(`bench:sync: --page-size: ${x} is not an integer from 1 to 5000\n`)
      process.exit(2)
    }
    return v
  })
const INITIAL_ONLY = Boolean(o.initialOnly) || PAGE_SIZES.length > 1
const ROUNDS = Number(o.rounds)
const sizes = [Number(o.small), Number(o.n)].filter((x, i, a) => x > 0 && a.indexOf(x) === i)
const NEW = Number(o.new)
const DURATION = Number(o.duration)
const CONNECTIONS = Number(o.connections)

const REPO = new URL('../../', import.meta.url).pathname
const CORES = cpus().length
const TS = join(REPO, 'scripts/clavitor-ts')

const secs = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e9
const now = () => process.hrtime.bigint()
const log = (s: string) => process.stderr.write(`bench:sync: ${s}\n`)

/** The rsync client's options for a source: TCP_NODELAY over the daemon, as the POP does. */
const clientOpts = (src: string) => (src.startsWith('rsync://') ? ['--sockopts=TCP_NODELAY'] : [])

async function rsync(args: string[]): Promise<number> {
  const t0 = now()
  await execa('rsync', args, { stdin: 'ignore' })
  return secs(t0)
}

/** Wall seconds and CPU seconds (this process + reaped children + the daemon) of `fn`. */
async function measured<T>(
  rsyncd: Rsyncd | null,
  fn: () => Promise<T>,
): Promise<{ value: T; secs: number; cpu: number }> {
  const c0 = selfCpu()
  const d0 = rsyncd?.cpu() ?? 0
  const t0 = now()
  const value = await fn()
  const wall = secs(t0)
  // the daemon reaps its per-connection child a moment after the client exits
  await new Promise((r) => setTimeout(r, 200))
  const c1 = selfCpu()
  const cpu = c1.self - c0.self + (c1.children - c0.children) + ((rsyncd?.cpu() ?? 0) - d0)
  return { value, secs: wall, cpu }
}

async function load(
  port: number,
  paths: string[],
): Promise<{ rps: number; p99: number; errors: number; non2xx: number }> {
  const pick = () => paths[Math.floor(Math.random() * paths.length)]!
  const run = (duration: number) =>
    new Promise<autocannon.Result>((resolve, reject) => {
      autocannon(
        {
          url: `http://127.0.0.1:${port}`,
          connections: CONNECTIONS,
          duration,
          requests: [
            {
              setupRequest: (req: Record<string, unknown>) => {
                req.path = pick()
                return req
              },
            },
          ],
        } as autocannon.Options,
        (err, res) => (err ? reject(err) : resolve(res)),
      )
    })
  await run(2) // warm-up
  const r = await run(DURATION)
  return { rps: r.requests.average, p99: r.latency.p99, errors: r.errors, non2xx: r.non2xx }
}

interface Figures {
  n: number
  build_s: number
  initial_pop_s: number
  initial_rsync_s: number
  /** CPU seconds: this process + its children (rsync clients, chattr, sync) + the daemon. */
  initial_pop_cpu: number
  initial_rsync_cpu: number
  incr_run_s: number
  incr_pull_s: number
  quick_check_s: number
  incr_rsync_tree_s: number
  incr_files_from_s: number
  pop_rps: number
  pop_p99: number
  pop_bad: number
  nginx_rps: number
  nginx_p99: number
  nginx_bad: number
}

async function benchOne(N: number, work: string): Promise<Figures> {
  const children: ChildProcess[] = []
  try {
    const coreDir = join(work, 'core')
    const core = await BlobStore.init({
      dataDir: coreDir,
      protection: 'best-effort',
      onWarning: () => {},
    })
    log(`N=${N}: building the core store`)
    let t0 = now()
    const p0s: string[] = []
    for (let done = 0; done < N;) {
      const k = Math.min(4096, N - done)
      const batch = []
      for (let i = 0; i < k; i++) {
        const p0 = randomBytes(16).toString('hex')
        p0s.push(p0)
        batch.push(core.put(p0, randomBytes(2048)))
      }
      await Promise.all(batch)
      done += k
    }
    const build_s = secs(t0)
    log(`N=${N}: built in ${build_s.toFixed(1)} s`)
    core.db.prepare("INSERT INTO pops (id, created_at) VALUES ('bench-pop', 1)").run()
    const app = Fastify()
    app.addHook('onRequest', async (req) => {
      req.popId = 'bench-pop'
    })
    await app.register(syncRoutes, { core: { db: core.db, store: core } })
    const coreUrl = await app.listen({ host: '127.0.0.1', port: 0 })
    const rsyncd =
      o.transport === 'daemon' ? await startRsyncd(core.root, join(work, 'rsyncd')) : null
    if (rsyncd) children.push({ kill: () => rsyncd.close() } as unknown as ChildProcess)
    const src = rsyncd?.url ?? core.root + '/'

    // initial full sync: the POP (verify every signature, seal, index) vs plain rsync -a
    const popDir = join(work, 'pop')
    const pop = await openPop({
      dataDir: popDir,
      popId: 'bench-pop',
      coreUrl,
      rsyncSource: src,
      initTrustKeys: [core.publicKey!],
      fullVerifyEveryMs: 365 * 86_400_000,
      ...(PAGE_SIZES[0] ? { pageSize: PAGE_SIZES[0] } : {}),
    })
    log(`N=${N}: initial POP sync`)
    execFileSync('sync')
    const popInitial = await measured(rsyncd, () => pop.sync.run())
    const initial_pop_s = popInitial.secs
    const first = popInitial.value
    if (first.sealed !== N) throw new Error(`initial sync sealed ${first.sealed}, expected ${N}`)
    const mirror = join(work, 'mirror')
    mkdirSync(mirror)
    log(`N=${N}: plain rsync -a of the tree`)
    execFileSync('sync')
    const plainInitial = await measured(rsyncd, () =>
      rsync([...clientOpts(src), '-a', src, mirror + '/']),
    )
    const initial_rsync_s = plainInitial.secs

    // 100 new blobs
    const fresh = await Promise.all(
      Array.from({ length: NEW }, () => {
        const p0 = randomBytes(16).toString('hex')
        p0s.push(p0)
        return core.put(p0, randomBytes(2048))
      }),
    )
    // bare rsync --files-from of the same files, into an empty folder
    const list = join(work, 'new.list')
    writeFileSync(list, fresh.map((f) => f.path + '\0').join(''))
    const bare = join(work, 'bare')
    mkdirSync(bare)
    // each incremental figure starts from a clean page cache state (nothing dirty left by
    // the run before it to be written back on its fsyncs)
    execFileSync('sync')
    const incr_files_from_s = await rsync([
      ...clientOpts(src),
      `--files-from=${list}`,
      '--from0',
      '-a',
      src,
      bare + '/',
    ])
    // plain rsync -a of the whole tree into the mirror that holds the first N
    execFileSync('sync')
    const incr_rsync_tree_s = await rsync([...clientOpts(src), '-a', src, mirror + '/'])
    // the POP's pull of them, end to end: feed, rsync, verify, seal, index, cursor (what
    // `pop run` does each hour once its tree watcher stands in for the local check)
    execFileSync('sync')
    t0 = now()
    const incr = await pullOnce({
      popId: 'bench-pop',
      db: pop.db,
      store: pop.store,
      feed: feedClientFor({ dataDir: popDir, popId: 'bench-pop', coreUrl }),
      rsync: { source: src },
      stagingDir: popPaths(popDir).staging,
    })
    const incr_pull_s = secs(t0)
    if (incr.sealed !== NEW) throw new Error(`incremental sealed ${incr.sealed}, expected ${NEW}`)
    // `pop sync --once` for another NEW blobs: the local quick check (a stat per blob), the
    // pull, the report to the core; and the quick check alone
    await Promise.all(
      Array.from({ length: NEW }, () => {
        const p0 = randomBytes(16).toString('hex')
        p0s.push(p0)
        return core.put(p0, randomBytes(2048))
      }),
    )
    execFileSync('sync')
    t0 = now()
    const again = await pop.sync.run()
    const incr_run_s = secs(t0)
    if (again.sealed !== NEW) throw new Error(`second run sealed ${again.sealed}, expected ${NEW}`)
    t0 = now()
    await quickCheck(pop.store)
    const quick_check_s = secs(t0)
    await app.close()

    // lookups: the POP app in its own process vs nginx (1 worker) over the same files
    const popPort = await freePort()
    const popServer = spawn(
      TS,
      [join(REPO, 'scripts/bench/pop-serve.ts'), popDir, String(popPort)],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    )
    children.push(popServer)
    await waitPort(popPort)
    log(`N=${N}: POP lookups (${DURATION} s)`)
    const popLoad = await load(
      popPort,
      p0s.map((p) => `/api/v1/wl3/${p}`),
    )
    const ngPort = await freePort()
    const ngDir = join(work, 'nginx')
    mkdirSync(ngDir)
    writeFileSync(
      join(ngDir, 'nginx.conf'),
      [
        'user root;',
        'worker_processes 1;',
        'daemon off;',
        `pid ${ngDir}/nginx.pid;`,
        `error_log ${ngDir}/error.log;`,
        'events { worker_connections 1024; }',
        'http {',
        '  access_log off;',
        '  sendfile on;',
        '  types { application/octet-stream cla; }',
        `  client_body_temp_path ${ngDir}/body; proxy_temp_path ${ngDir}/proxy; fastcgi_temp_path ${ngDir}/fcgi; uwsgi_temp_path ${ngDir}/uwsgi; scgi_temp_path ${ngDir}/scgi;`,
        `  server { listen 127.0.0.1:${ngPort}; root ${pop.store.root}; location / { } }`,
        '}',
      ].join('\n') + '\n',
    )
    const latestPaths = p0s.map((p) => '/' + pop.store.latest(p)!.path)
    const nginx = spawn('nginx', ['-c', join(ngDir, 'nginx.conf'), '-p', ngDir], {
      stdio: ['ignore', 'ignore', 'inherit'],
    })
    nginx.on('exit', (code, sig) => log(`nginx exited (${code ?? sig}); see ${ngDir}/error.log`))
    children.push(nginx)
    await waitPort(ngPort)
    log(`N=${N}: nginx static (${DURATION} s)`)
    const ngLoad = await load(ngPort, latestPaths)
    await pop.close()
    await core.close()
    return {
      n: N,
      build_s,
      initial_pop_s,
      initial_rsync_s,
      initial_pop_cpu: popInitial.cpu,
      initial_rsync_cpu: plainInitial.cpu,
      incr_run_s,
      incr_pull_s,
      quick_check_s,
      incr_rsync_tree_s,
      incr_files_from_s,
      pop_rps: popLoad.rps,
      pop_p99: popLoad.p99,
      pop_bad: popLoad.errors + popLoad.non2xx,
      nginx_rps: ngLoad.rps,
      nginx_p99: ngLoad.p99,
      nginx_bad: ngLoad.errors + ngLoad.non2xx,
    }
  } finally {
    for (const c of children) c.kill('SIGTERM')
  }
}

const ms = (s: number) => `${(s * 1000).toFixed(0)} ms`

function printTable(results: Figures[]): void {
  const rows: Array<[string, ...string[]]> = [
    ['', ...results.map((r) => `N = ${r.n.toLocaleString('en-US')}`)],
    ['core store build (concurrent puts)', ...results.map((r) => `${r.build_s.toFixed(1)} s`)],
    [`incremental: POP pull of ${NEW} new, end to end`, ...results.map((r) => ms(r.incr_pull_s))],
    [
      `incremental: pop sync --once of ${NEW} more (check + pull + report)`,
      ...results.map((r) => ms(r.incr_run_s)),
    ],
    [
      '  of which the local quick check (a stat per blob)',
      ...results.map((r) => ms(r.quick_check_s)),
    ],
    [
      'incremental: plain rsync -a of the whole tree',
      ...results.map((r) => ms(r.incr_rsync_tree_s)),
    ],
    [
      `incremental: bare rsync --files-from (${NEW} files)`,
      ...results.map((r) => ms(r.incr_files_from_s)),
    ],
    [
      '  whole-tree rsync / POP pull',
      ...results.map((r) => `${(r.incr_rsync_tree_s / r.incr_pull_s).toFixed(1)}x`),
    ],
    [
      '  POP pull / bare --files-from',
      ...results.map((r) => `${(r.incr_pull_s / r.incr_files_from_s).toFixed(1)}x`),
    ],
    [
      'initial: POP full sync (bootstrap from 5,000: verify against the log, seal, index)',
      ...results.map((r) => `${Math.round(r.n / r.initial_pop_s)} blobs/s`),
    ],
    [
      'initial: plain rsync -a of the tree',
      ...results.map((r) => `${Math.round(r.n / r.initial_rsync_s)} blobs/s`),
    ],
    [
      '  POP / plain rsync',
      ...results.map((r) => `${(r.initial_rsync_s / r.initial_pop_s).toFixed(2)}`),
    ],
    [
      'initial: CPU s, POP (all processes) / plain rsync',
      ...results.map((r) => `${r.initial_pop_cpu.toFixed(1)} / ${r.initial_rsync_cpu.toFixed(1)}`),
    ],
    [
      `  POP ceiling on ${CORES} cores: plain wall / (POP CPU / ${CORES})`,
      ...results.map(
        (r) => `${Math.min(1, r.initial_rsync_s / (r.initial_pop_cpu / CORES)).toFixed(2)}`,
      ),
    ],
    [
      'lookups: POP latest WL3 (random P0)',
      ...results.map(
        (r) =>
          `${Math.round(r.pop_rps)} req/s, p99 ${r.pop_p99} ms${r.pop_bad ? `, ${r.pop_bad} bad` : ''}`,
      ),
    ],
    [
      'lookups: nginx static, same files',
      ...results.map(
        (r) =>
          `${Math.round(r.nginx_rps)} req/s, p99 ${r.nginx_p99} ms${r.nginx_bad ? `, ${r.nginx_bad} bad` : ''}`,
      ),
    ],
    ['  POP / nginx', ...results.map((r) => `${(r.pop_rps / r.nginx_rps).toFixed(2)}`)],
  ]
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  const line = (r: string[]) => '| ' + r.map((c, i) => c.padEnd(widths[i]!)).join(' | ') + ' |'
  process.stdout.write(line(rows[0]!) + '\n')
  process.stdout.write('| ' + widths.map((w) => '-'.repeat(w)).join(' | ') + ' |\n')
  for (const r of rows.slice(1)) process.stdout.write(line(r) + '\n')
  process.stdout.write(
    `\n(${CONNECTIONS} connections, ${DURATION} s per load run after a 2 s warm-up; one server process each; ${new Date().toISOString()})\n`,
  )
}

async function buildCore(N: number, work: string): Promise<BlobStore> {
  const core = await BlobStore.init({
    dataDir: join(work, 'core'),
    protection: 'best-effort',
    onWarning: () => {},
  })
  log(`N=${N}: building the core store`)
  for (let done = 0; done < N;) {
    const k = Math.min(4096, N - done)
    await Promise.all(
      Array.from({ length: k }, () => core.put(randomBytes(16).toString('hex'), randomBytes(2048))),
    )
    done += k
  }
  return core
}

interface InitialRow {
  n: number
  round: number
  what: string
  secs: number
  /** CPU seconds of every process involved (this one, its children, the rsync daemon). */
  cpu: number
  load: number
  /** The bootstrap's steps (seconds from its start), for the POP's runs. */
  steps?: { feed_s: number; rsync_s: number; verified_s: number; ingested_s: number }
}

/**
 * Initial full sync only: per round, plain `rsync -a`, plain `rsync -a` then `sync`, and the
 * POP's initial sync (a bootstrap: whole-tree rsync, bulk verification against the signed
 * log, bulk seal and index; with --page-size, page by page at each size instead), order
 * rotated each round, each into a fresh folder, against the same core through the same
 * daemon.
 */
async function initialOnly(N: number, work: string, rows: InitialRow[]): Promise<void> {
  const core = await buildCore(N, work)
  core.db.prepare("INSERT INTO pops (id, created_at) VALUES ('bench-pop', 1)").run()
  const app = Fastify()
  app.addHook('onRequest', async (req) => {
    req.popId = 'bench-pop'
  })
  await app.register(syncRoutes, { core: { db: core.db, store: core } })
  const coreUrl = await app.listen({ host: '127.0.0.1', port: 0 })
  const pops: Array<number | 'bootstrap'> = PAGE_SIZES.length ? PAGE_SIZES : ['bootstrap']
  const rsyncd =
    o.transport === 'daemon' ? await startRsyncd(core.root, join(work, 'rsyncd')) : null
  const src = rsyncd?.url ?? core.root + '/'
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      const kinds: Array<number | 'bootstrap' | 'rsync' | 'rsync+sync'> = [
        'rsync',
        'rsync+sync',
        ...pops,
      ]
      const shift = (round - 1) % kinds.length
      const order = [...kinds.slice(shift), ...kinds.slice(0, shift)]
      for (const k of order) {
        const dir = join(work, `run-${round}-${k}`)
        // start each run from the same state: nothing dirty left by the previous run or its cleanup
        execFileSync('sync')
        const load = (await import('node:os')).loadavg()[0]!
        if (k === 'rsync' || k === 'rsync+sync') {
          mkdirSync(dir)
          const m = await measured(rsyncd, async () => {
            await rsync([...clientOpts(src), '-a', src, dir + '/'])
            if (k === 'rsync+sync') execFileSync('sync')
          })
          rows.push({
            n: N,
            round,
            what: k === 'rsync' ? 'plain rsync -a' : 'rsync -a, then sync',
            secs: m.secs,
            cpu: m.cpu,
            load,
          })
        } else {
          const pop = await BlobStore.init({
            dataDir: dir,
            role: 'pop',
            trustKeys: [core.publicKey!],
            protection: 'best-effort',
            onWarning: () => {},
          })
          let steps: InitialRow['steps']
          const m = await measured(rsyncd, () =>
            pullOnce({
              popId: 'bench-pop',
              db: pop.db,
              store: pop,
              feed: feedClientFor({ dataDir: dir, popId: 'bench-pop', coreUrl }),
              rsync: { source: src },
              stagingDir: join(dir, 'sync-staging'),
              ...(k === 'bootstrap' ? { bootstrapMin: 1 } : { bootstrapMin: 0, pageSize: k }),
              onBootstrap: (b) => (steps = b.timings),
            }),
          )
          await pop.close()
          if (m.value.sealed !== N)
            throw new Error(`initial sync sealed ${m.value.sealed}, expected ${N}`)
          rows.push({
            n: N,
            round,
            what: k === 'bootstrap' ? 'POP bootstrap' : `POP page ${k}`,
            secs: m.secs,
            cpu: m.cpu,
            load,
            ...(steps ? { steps } : {}),
          })
        }
        log(`N=${N} round ${round} ${k}: ${(N / rows[rows.length - 1]!.secs).toFixed(0)} blobs/s`)
        // kept until the end: deleting 10,000+ files slows every later file creation on a
        // filesystem mounted with `discard` (this VM), which would bias the next run
      }
    }
  } finally {
    rsyncd?.close()
    await app.close()
    await core.close()
  }
}

function printInitial(rows: InitialRow[]): void {
  process.stdout.write(
    '| N | round | run | load | time | blobs/s | CPU s | / plain rsync -a | / rsync -a + sync | bootstrap steps (s from start: feed, rsync, verified, ingested) |\n',
  )
  process.stdout.write('| -: | -: | --- | -: | -: | -: | -: | -: | -: | --- |\n')
  for (const r of rows) {
    const same = (what: string) =>
      rows.find((x) => x.n === r.n && x.round === r.round && x.what === what)
    const plain = same('plain rsync -a')
    const synced = same('rsync -a, then sync')
    const isPop = r.what.startsWith('POP')
    const ratio = (b: InitialRow | undefined) => (b && isPop ? (b.secs / r.secs).toFixed(2) : '')
    const st = r.steps
      ? `${r.steps.feed_s.toFixed(1)}, ${r.steps.rsync_s.toFixed(1)}, ${r.steps.verified_s.toFixed(1)}, ${r.steps.ingested_s.toFixed(1)}`
      : ''
    process.stdout.write(
      `| ${r.n.toLocaleString('en-US')} | ${r.round} | ${r.what} | ${r.load.toFixed(1)} | ${r.secs.toFixed(2)} s | ${Math.round(r.n / r.secs)} | ${r.cpu.toFixed(1)} | ${ratio(plain)} | ${ratio(synced)} | ${st} |\n`,
    )
  }
  process.stdout.write(`\n(${new Date().toISOString()})\n`)
}

/** Per N: a work folder of its own (a fresh loop ext4 with --fs loop), removed afterwards. */
async function withWork<T>(
  n: number,
  copies: number,
  fn: (work: string) => Promise<T>,
): Promise<T> {
  // ~9 KiB per blob and copy (a 4 KiB block for the file, one for its p0 folder, index rows)
  const wfs = makeWorkFs(o.fs, 1 + (n * 9 * copies) / 1024 ** 2, log)
  try {
    return await fn(wfs.dir)
  } finally {
    if (o.keep) log(`kept ${wfs.dir}`)
    else {
      log(`N=${n}: cleaning up ${wfs.dir}`)
      wfs.close()
    }
  }
}

log(
  `transport: ${o.transport === 'daemon' ? 'rsync daemon on 127.0.0.1 (TCP_NODELAY)' : 'local folder'}`,
)
if (INITIAL_ONLY) {
  const rows: InitialRow[] = []
  const copies = 1 + ROUNDS * (2 + Math.max(1, PAGE_SIZES.length))
  for (const n of sizes) await withWork(n, copies, (work) => initialOnly(n, work, rows))
  printInitial(rows)
  process.exit(0)
}

const results: Figures[] = []
for (const n of sizes) {
  results.push(await withWork(n, 4, (work) => benchOne(n, work)))
  printTable(results)
}
