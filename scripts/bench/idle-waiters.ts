// `npm run bench:idle-waiters` (issue 18): 1,000 POPs holding the feed long-poll on the real
// POP API (`clavitor core pop-api`: mTLS, RFC 9421 signatures, tokens, one audit row per
// request), and what that costs the core's POP API process.
//
// What is simulated, honestly: 1,000 real POP identities (each its own Ed25519 key, CSR,
// certificate from the core's CA and registry row with an allowlist: the library calls of
// `pop init`, `ca issue-pop`, `core pop add`), each held by one authenticated client
// (PopApiClient + the feed client of `pop run`: its own TLS connection, token and signed
// requests) in this one process over loopback. They do not pull: after a wake-up a client
// waits again from the new head, as a POP does after its pull. `core serve` is the store's
// writer (a separate process, as in production: the POP API learns of commits through the
// hint file {data}/run/published).
//
// Phases, each measured on the POP API process (/proc/PID: VmRSS, fds, utime+stime):
//   0. started, nobody waiting;
//   1. the 1,000 clients start their long-polls (token, TLS handshake, first wait): ramp;
//   2. idle: `--idle` seconds with every client waiting (a wait of `--wait` s ends empty and
//      the client asks again, as pop run does);
//   3. one registration (POST /api/v1/credentials/register to core serve) wakes them all:
//      from its 201 until the last client has its answer, and the CPU of that burst;
//   4. the audit rows the core wrote during the idle phase, by kind, per POP per hour.
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { setMaxListeners } from 'node:events'
import { cpus, loadavg, totalmem } from 'node:os'
import { join } from 'node:path'
import { createServer, type AddressInfo } from 'node:net'
import Database from 'better-sqlite3'
import { Command } from 'commander'
import { PopApiClient } from '../../lib/auth/pop-client.js'
import { requestFeedClient } from '../../lib/pop-sync/transport.js'
import {
  percentile,
  prepareCore,
  sleep,
  startAll,
  workDir,
  type CoreSetup,
  type Running,
} from './propagation-env.js'

const o = new Command()
  .option('--pops <n>', 'POPs (one certificate, one client each)', '1000')
  .option('--wait <s>', 'long-poll wait, seconds (pop run default 45)', '45')
  .option('--idle <s>', 'idle phase, seconds (a multiple of --wait counts each POP evenly)', '90')
  .option('--ramp <n>', 'clients started at once while ramping up', '50')
  .option(
    '--data <dir>',
    'keep the enrolled core and POPs in this folder; a later run with the same folder reuses them (no new certificates)',
  )
  .parse()
  .opts<{ pops: string; wait: string; idle: string; ramp: string; data?: string }>()
const N = Number(o.pops)
const WAIT = Number(o.wait)
const IDLE = Number(o.idle)
const say = (s: string) => process.stderr.write(s + '\n')

async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const p = (s.address() as AddressInfo).port
  await new Promise((r) => s.close(r))
  return p
}

interface ProcStat {
  rssKiB: number
  fds: number
  cpuS: number
  threads: number
}
function procStat(pid: number): ProcStat {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const rssKiB = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN)
  const threads = Number(/Threads:\s+(\d+)/.exec(status)?.[1] ?? NaN)
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const cpuS = (Number(f[11]) + Number(f[12])) / 100 // utime + stime, clock ticks (100/s)
  return { rssKiB, fds: readdirSync(`/proc/${pid}/fd`).length, cpuS, threads }
}
const mib = (k: number) => `${(k / 1024).toFixed(1)} MiB`

const work = o.data ? { dir: o.data, remove: () => {} } : workDir('clavitor-bench-idle-')
let run: Running | null = null
const clients: PopApiClient[] = []
const stopAll = new AbortController()
setMaxListeners(0, stopAll.signal) // one listener per client's wait in flight
const cleanup = async () => {
  stopAll.abort()
  for (const c of clients) c.close()
  await run?.procs.stopAll()
  work.remove()
}
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)))

try {
  // --- the POPs' identities -------------------------------------------------------------
  const ids = Array.from({ length: N }, (_, i) => `idle-${String(i).padStart(4, '0')}`)
  const saved = join(work.dir, 'setup.json')
  let setup: CoreSetup
  let enrolS: number
  if (existsSync(saved)) {
    ;({ setup, enrolS } = JSON.parse(readFileSync(saved, 'utf8')) as {
      setup: CoreSetup
      enrolS: number
    })
    if (setup.pops.length !== N) throw new Error(`${saved} holds ${setup.pops.length} POPs`)
    say(`reusing the ${N} POPs enrolled in ${work.dir} (enrolment took ${enrolS.toFixed(1)} s)`)
  } else {
    const tEnrol = performance.now()
    setup = await prepareCore({
      dir: work.dir,
      popIds: ids,
      allow: () => '127.0.0.1/32',
      concurrency: 8,
      onProgress: (n) => n % 100 === 0 && say(`enrolled ${n}/${N}`),
    })
    enrolS = (performance.now() - tEnrol) / 1000
    writeFileSync(saved, JSON.stringify({ setup, enrolS }))
    say(`${N} POPs enrolled (key, CSR, certificate, registry) in ${enrolS.toFixed(1)} s`)
  }

  run = await startAll(setup, {
    coreNs: null,
    coreIp: '127.0.0.1',
    ports: { api: await freePort(), popApi: await freePort() },
  })
  const pid = run.popApi.pid
  await sleep(2000)
  const s0 = procStat(pid)
  say(`POP API pid ${pid}: ${mib(s0.rssKiB)}, ${s0.fds} fds, nobody waiting`)

  // --- phase 1: every client holds a long-poll -----------------------------------------
  const waiting = new Set<number>() // clients with a wait in flight
  let answers = 0
  let failures = 0
  const firstError: string[] = []
  let wakeT0 = 0
  // every answer that carried an item: when, and the cursor after it (a wake-up by the
  // write of phase 3 has that write's cursor; it may land before this process read the 201)
  const withItems: Array<{ t: number; next: string | null }> = []
  const loops: Promise<void>[] = []
  const tRamp = performance.now()
  const dbPath = join(setup.coreDir, 'meta.db')
  const headCursor = (): string | null => {
    const db = new Database(dbPath, { readonly: true })
    try {
      const h = db
        .prepare('SELECT created_at, seq FROM blobs ORDER BY created_at DESC, seq DESC LIMIT 1')
        .get() as { created_at: number; seq: number } | undefined
      return h ? `c1.${h.created_at}.${h.seq}` : null
    } finally {
      db.close()
    }
  }
  let cursor0 = headCursor()
  const started: Promise<void>[] = []
  for (let i = 0; i < N; i++) {
    const client = PopApiClient.fromDataDir(setup.pops[i]!.dir, {
      baseUrl: run.popApiUrl,
      popId: ids[i]!,
    })
    clients.push(client)
    const feed = requestFeedClient(client) as Required<ReturnType<typeof requestFeedClient>>
    let markStarted!: () => void
    started.push(new Promise<void>((r) => (markStarted = r)))
    loops.push(
      (async () => {
        let cursor = cursor0
        let first = true
        while (!stopAll.signal.aborted) {
          waiting.add(i)
          if (first) {
            first = false
            // the request is on its way once the token is there; count it as started then
            setTimeout(markStarted, 0)
          }
          try {
            const page = await feed.wait(cursor, WAIT, stopAll.signal)
            waiting.delete(i)
            answers++
            if (page.items.length > 0) {
              withItems.push({ t: performance.now(), next: page.next })
              cursor = page.next ?? cursor
            }
          } catch (err) {
            waiting.delete(i)
            if (stopAll.signal.aborted) return
            failures++
            if (firstError.length < 3) firstError.push((err as Error).message)
            await sleep(1000)
          }
        }
      })(),
    )
    if ((i + 1) % Number(o.ramp) === 0) await sleep(50)
  }
  await Promise.all(started)
  // ramped up: every POP has its token and its first wait reached the server (each has its
  // audit row, written when the request starts)
  const rampFromUs = Math.floor((performance.timeOrigin + tRamp) * 1000)
  for (;;) {
    const db = new Database(dbPath, { readonly: true })
    const n = db
      .prepare(
        "SELECT count(DISTINCT actor) FROM events WHERE kind = 'pop.request' AND route LIKE '%/pop/v1/feed' AND at >= ?",
      )
      .pluck()
      .get(rampFromUs) as number
    db.close()
    if (n >= N) break
    await sleep(250)
  }
  const rampS = (performance.now() - tRamp) / 1000
  const s1 = procStat(pid)
  say(
    `${waiting.size} waiting after a ramp of ${rampS.toFixed(1)} s: ${mib(s1.rssKiB)}, ${s1.fds} fds, ${(s1.cpuS - s0.cpuS).toFixed(2)} CPU s; failures ${failures} ${firstError.join(' | ')}`,
  )

  // --- phase 2: idle -------------------------------------------------------------------
  const idleFromUs = Date.now() * 1000
  const a = procStat(pid)
  const rssSamples: number[] = []
  for (let t = 0; t < IDLE; t += 5) {
    await sleep(5000)
    rssSamples.push(procStat(pid).rssKiB)
  }
  const b = procStat(pid)
  const idleToUs = Date.now() * 1000
  say(
    `idle ${IDLE} s: ${mib(b.rssKiB)}, ${b.fds} fds, ${(b.cpuS - a.cpuS).toFixed(2)} CPU s, ${waiting.size} waiting, failures ${failures}`,
  )

  // --- phase 3: one write wakes them all -----------------------------------------------
  const before = procStat(pid)
  const waitingAtWrite = waiting.size
  const p0 = randomBytes(16).toString('hex')
  const wl3 = randomBytes(400)
  const res = await fetch(`${run.coreUrl}/api/v1/credentials/register`, {
    method: 'POST',
    headers: { authorization: `Bearer ${setup.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ p0, wl3: wl3.toString('base64') }),
  })
  wakeT0 = performance.now()
  const reg = (await res.json()) as { created_at: number; seq: number; sha256: string }
  if (res.status !== 201) throw new Error(`register: HTTP ${res.status}`)
  if (reg.sha256 !== createHash('sha256').update(wl3).digest('hex')) throw new Error('sha256')
  const wakeTarget = `c1.${reg.created_at}.${reg.seq}`
  const wokenNow = () => withItems.filter((x) => x.next === wakeTarget).length
  const end = Date.now() + 60_000
  while (wokenNow() < waitingAtWrite && Date.now() < end) await sleep(5)
  const woken = withItems.filter((x) => x.next === wakeTarget).map((x) => x.t - wakeT0)
  const wakeMs = woken.length ? Math.max(...woken) : NaN
  const after = procStat(pid)
  const sorted = [...woken].sort((x, y) => x - y)
  say(
    `one write: ${woken.length}/${waitingAtWrite} woken; last ${wakeMs.toFixed(0)} ms after the 201 (p50 ${percentile(sorted, 50).toFixed(0)} ms); burst CPU ${(after.cpuS - before.cpuS).toFixed(2)} s; ${mib(after.rssKiB)}`,
  )
  await sleep(3000)
  const settled = procStat(pid)

  // --- phase 4: audit rows ---------------------------------------------------------------
  const db = new Database(dbPath, { readonly: true })
  const kinds = db
    .prepare(
      'SELECT kind, route, outcome, count(*) AS n FROM events WHERE at >= ? AND at < ? GROUP BY kind, route, outcome ORDER BY n DESC',
    )
    .all(idleFromUs, idleToUs) as Array<{
    kind: string
    route: string | null
    outcome: string
    n: number
  }>
  db.close()
  const idleSpanS = (idleToUs - idleFromUs) / 1e6
  const perPopHour = (n: number) => (n / N) * (3600 / idleSpanS)
  const popRequests = kinds.filter((k) => k.kind === 'pop.request').reduce((s, k) => s + k.n, 0)

  // --- report ------------------------------------------------------------------------------
  const la = loadavg()
  const lines = [
    `${new Date().toISOString()}  ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${(totalmem() / 2 ** 30).toFixed(0)} GiB, load ${la.map((x) => x.toFixed(2)).join(' ')}`,
    `${N} POPs (one certificate each), long-poll wait ${WAIT} s, clients in one process over loopback; enrolment of the ${N} took ${enrolS.toFixed(1)} s`,
    '',
    '| POP API process | RSS | fds | CPU |',
    '| --- | ---: | ---: | ---: |',
    `| started, nobody waiting | ${mib(s0.rssKiB)} | ${s0.fds} | — |`,
    `| ${waiting.size} waiting after the ramp (${rampS.toFixed(1)} s: tokens, TLS handshakes, first waits) | ${mib(s1.rssKiB)} | ${s1.fds} | ${(s1.cpuS - s0.cpuS).toFixed(2)} s |`,
    `| idle ${IDLE} s, ${waitingAtWrite} waiting (RSS min–max ${mib(Math.min(...rssSamples))}–${mib(Math.max(...rssSamples))}) | ${mib(b.rssKiB)} | ${b.fds} | ${(b.cpuS - a.cpuS).toFixed(2)} s (${(((b.cpuS - a.cpuS) / IDLE) * 100).toFixed(1)} % of a core) |`,
    `| one write wakes ${woken.length}/${waitingAtWrite}: last answer ${wakeMs.toFixed(0)} ms after the 201 (p50 ${percentile(sorted, 50).toFixed(0)}, p99 ${percentile(sorted, 99).toFixed(0)}) | ${mib(after.rssKiB)} | ${after.fds} | ${(after.cpuS - before.cpuS).toFixed(2)} s |`,
    `| 3 s later | ${mib(settled.rssKiB)} | ${settled.fds} | — |`,
    '',
    `per waiter: ${(((b.rssKiB - s0.rssKiB) * 1024) / N / 1024).toFixed(1)} KiB RSS, ${((b.fds - s0.fds) / N).toFixed(2)} fds`,
    `audit rows in the idle ${idleSpanS.toFixed(0)} s: ` +
      kinds.map((k) => `${k.kind} ${k.route ?? ''} ${k.outcome}: ${k.n}`).join('; '),
    `pop.request rows per POP per hour (extrapolated): ${perPopHour(popRequests).toFixed(1)} (3600/${WAIT} = ${(3600 / WAIT).toFixed(0)} waits; besides, a token refresh about every 4 minutes, tokens live 300 s and are renewed in their last 60: ≈15 a POP an hour, a pop.request and a pop.token row each, seen only when one falls in the window)`,
    `client failures: ${failures}${firstError.length ? ` (${firstError.join(' | ')})` : ''}`,
  ]
  process.stdout.write(lines.join('\n') + '\n')
} finally {
  await cleanup()
}
