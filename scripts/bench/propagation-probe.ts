// The propagation probe: run by scripts/bench/propagation-env.ts inside the core's network
// namespace, where it reaches the core's credentials API and every POP's lookup server.
//
// 1. Waits until every POP has finished a run and is idle (GET /healthz), then reads each
//    POP's /metrics (runs by trigger, blobs sealed): the "before" of the evidence.
// 2. A steady write load: `--load-rate` registrations per second of other P0s (new random
//    P0s, 200–600 byte WL3s), through POST /api/v1/credentials/register, for as long as the
//    measured registrations last.
// 3. Measured registrations: one every `--every-ms`, each a new P0 with random bytes; the
//    clock starts at its 201. Per POP, a checker takes the oldest measured registration it
//    has not seen yet and asks GET /api/v1/wl3/{p0}: the same bytes (and the ETag of their
//    sha256) stop its clock for that POP and it moves to the next one at once; anything
//    else, it asks again `--poll-ms` later. A registration not seen within `--give-up-ms`
//    counts as missed (null).
// 4. Waits until every POP's own cursor (/healthz) reaches the newest blob registered here
//    (load included), then reads /metrics and /healthz of every POP again; prints the report
//    (JSON) on stdout.
//
// Times are performance.now() in this one process: from the client's 201 to the client's
// 200 with the bytes, so both include one HTTP round trip; resolution is the poll interval.
import { createHash, randomBytes } from 'node:crypto'
import { Command } from 'commander'
import type { PopMetrics, ProbeReport } from './propagation-env.js'

const cmd = new Command()
  .requiredOption('--core <url>', "the core's credentials API base URL")
  .requiredOption('--key-env <name>', 'environment variable holding the vault API key')
  .requiredOption('--metrics-token-env <name>', 'environment variable holding the /metrics token')
  .requiredOption('--pop <url...>', "each POP's lookup server base URL")
  .option('--measured <n>', 'measured registrations', '30')
  .option('--every-ms <ms>', 'one measured registration this often', '300')
  .option('--load-rate <n>', 'background registrations per second (other P0s)', '10')
  .option('--poll-ms <ms>', 'lookup poll interval per POP while waiting', '20')
  .option('--give-up-ms <ms>', 'a registration not seen by then counts as missed', '120000')
  .parse()
const o = cmd.opts<{
  core: string
  keyEnv: string
  metricsTokenEnv: string
  pop: string[]
  measured: string
  everyMs: string
  loadRate: string
  pollMs: string
  giveUpMs: string
}>()
const key = process.env[o.keyEnv] ?? ''
const metricsToken = process.env[o.metricsTokenEnv] ?? ''
const N = Number(o.measured)
const EVERY = Number(o.everyMs)
const RATE = Number(o.loadRate)
const POLL = Number(o.pollMs)
const GIVE_UP = Number(o.giveUpMs)
const pops = o.pop
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const log = (s: string) => process.stderr.write(`probe: ${s}\n`)

/** The newest blob registered here: every POP must reach it before the "after" metrics. */
let newest = { created_at: 0, seq: 0 }

async function register(p0: string, wl3: Buffer): Promise<number> {
  const res = await fetch(`${o.core}/api/v1/credentials/register`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ p0, wl3: wl3.toString('base64') }),
  })
  const body = (await res.json()) as { created_at?: number; seq?: number }
  if (res.status === 201 && body.created_at !== undefined && body.seq !== undefined) {
    const b = { created_at: body.created_at, seq: body.seq }
    if (
      b.created_at > newest.created_at ||
      (b.created_at === newest.created_at && b.seq > newest.seq)
    )
      newest = b
  }
  return res.status
}

/** The POP's cursor (GET /healthz) is at or past `pos`. */
function reached(cursor: unknown, pos: { created_at: number; seq: number }): boolean {
  const m = typeof cursor === 'string' ? /^c1\.(\d+)\.(\d+)$/.exec(cursor) : null
  if (!m) return false
  const c = Number(m[1])
  return c > pos.created_at || (c === pos.created_at && Number(m[2]) >= pos.seq)
}

async function metricsOf(url: string): Promise<PopMetrics> {
  const res = await fetch(`${url}/metrics`, {
    headers: { authorization: `Bearer ${metricsToken}` },
  })
  const text = await res.text()
  if (res.status !== 200) throw new Error(`${url}/metrics: HTTP ${res.status}`)
  const runs: Record<string, number> = {}
  for (const m of text.matchAll(/^clavitor_sync_runs_total\{([^}]*)\} (\d+)/gm)) {
    const trigger = /trigger="([^"]+)"/.exec(m[1]!)?.[1] ?? '?'
    runs[trigger] = Number(m[2])
  }
  const blobs = Number(/^clavitor_sync_blobs_total(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? 0)
  return { runs, blobs }
}

async function health(url: string): Promise<Record<string, unknown> | null> {
  try {
    const res = await fetch(`${url}/healthz`)
    return (await res.json()) as Record<string, unknown>
  } catch {
    return null
  }
}

// 1. every POP done with its first run and idle
const ready = Date.now() + 60_000
for (const url of pops) {
  for (;;) {
    const h = await health(url)
    if (h && h.last_run && h.syncing === false) break
    if (Date.now() > ready) throw new Error(`${url} did not finish its first run`)
    await sleep(100)
  }
}
const before = await Promise.all(pops.map(metricsOf))
const fromUs = Date.now() * 1000

// 2. the write load
const load = { rate: RATE, sent: 0, ok: 0, failed: 0, seconds: 0 }
let loading = true
const loadStart = performance.now()
const loadInFlight = new Set<Promise<void>>()
const loadLoop = (async () => {
  if (RATE <= 0) return
  const gap = 1000 / RATE
  let next = performance.now()
  while (loading) {
    next += gap
    // at most 8 in flight: a core slower than the rate gets a lower rate (reported), not a queue
    if (loadInFlight.size < 8) {
      load.sent++
      const p = register(
        randomBytes(16).toString('hex'),
        randomBytes(200 + Math.floor(Math.random() * 400)),
      )
        .then((s) => void (s === 201 ? load.ok++ : load.failed++))
        .catch(() => void load.failed++)
        .finally(() => loadInFlight.delete(p))
      loadInFlight.add(p)
    }
    const d = next - performance.now()
    if (d > 0) await sleep(d)
  }
})()

// 3. measured registrations and one checker per POP
interface Measured {
  p0: string
  wl3: Buffer
  etag: string
  t0: number
  ms: Array<number | null>
}
const measured: Measured[] = []
const queues: Measured[][] = pops.map(() => [])
let writing = true
let lookups = 0

const writer = (async () => {
  let next = performance.now()
  for (let i = 0; i < N; i++) {
    const p0 = randomBytes(16).toString('hex')
    const wl3 = randomBytes(200 + Math.floor(Math.random() * 400))
    const status = await register(p0, wl3)
    const t0 = performance.now()
    if (status !== 201) throw new Error(`measured registration ${i}: HTTP ${status}`)
    const m: Measured = {
      p0,
      wl3,
      etag: `"${createHash('sha256').update(wl3).digest('hex')}"`,
      t0,
      ms: pops.map(() => null),
    }
    measured.push(m)
    for (const q of queues) q.push(m)
    next += EVERY
    const d = next - performance.now()
    if (d > 0) await sleep(d)
  }
  writing = false
})()

async function checker(i: number): Promise<void> {
  const url = pops[i]!
  const q = queues[i]!
  for (;;) {
    const m = q[0]
    if (!m) {
      if (!writing) return
      await sleep(POLL)
      continue
    }
    lookups++
    let served = false
    try {
      const res = await fetch(`${url}/api/v1/wl3/${m.p0}`)
      const body = Buffer.from(await res.arrayBuffer())
      served = res.status === 200 && res.headers.get('etag') === m.etag && body.equals(m.wl3)
    } catch {
      // the POP is unreachable this instant: ask again
    }
    const now = performance.now()
    if (served) {
      m.ms[i] = now - m.t0
      q.shift()
      continue
    }
    if (now - m.t0 > GIVE_UP) {
      log(`${url}: ${m.p0} not served after ${GIVE_UP} ms`)
      q.shift()
      continue
    }
    await sleep(POLL)
  }
}

await Promise.all([writer, ...pops.map((_, i) => checker(i))])
loading = false
await loadLoop
await Promise.all([...loadInFlight])
load.seconds = (performance.now() - loadStart) / 1000

// 4. evidence after: once every POP holds everything registered here (its own cursor)
const caughtUp = Date.now() + GIVE_UP
for (const url of pops) {
  for (;;) {
    const h = await health(url)
    if (h && reached(h.cursor, newest) && h.syncing === false) break
    if (Date.now() > caughtUp) {
      log(`${url}: cursor ${String(h?.cursor)} short of c1.${newest.created_at}.${newest.seq}`)
      break
    }
    await sleep(POLL)
  }
}
const toUs = Date.now() * 1000
const after = await Promise.all(pops.map(metricsOf))
const healthAfter = await Promise.all(pops.map(async (u) => (await health(u)) ?? {}))
const report: ProbeReport = {
  pops,
  measured: measured.map((m) => ({
    p0: m.p0,
    ms: m.ms.map((x) => (x === null ? null : Math.round(x * 10) / 10)),
    all: m.ms.some((x) => x === null)
      ? null
      : Math.round(Math.max(...(m.ms as number[])) * 10) / 10,
  })),
  load,
  lookups: { requests: lookups, pollMs: POLL },
  metrics: { before, after },
  health: healthAfter,
  window: { fromUs, toUs },
}
process.stdout.write(JSON.stringify(report) + '\n')
