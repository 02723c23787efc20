// Core RSS under a registration soak (issue 13 item 8): a real core (`clavitor core serve`
// as a child process, its own data folder) takes POST /api/v1/credentials/register at a
// fixed concurrency for --minutes; the child's RSS (VmRSS from /proc) is sampled every few
// seconds. Then the same load against a bare node:http server (soak-baseline.ts) for
// --baseline-minutes. Prints a table per minute and the RSS slope over the second half
// (MB per 10,000 registrations): a leak shows as a slope that does not fall to ~0.
// `npm run bench:soak [-- --minutes 10 --concurrency 50 --baseline-minutes 2]`.
// A benchmark, not part of the package.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Command } from 'commander'
import { openCore } from '../../lib/core.js'
import { nowMicros } from '../../lib/db/open.js'

const o = new Command()
  .option('--minutes <n>', 'soak length for the core', '10')
  .option('--baseline-minutes <n>', 'soak length for the bare node:http baseline', '2')
  .option('--concurrency <n>', 'requests in flight', '50')
  .option('--sample-s <n>', 'RSS sample interval in seconds', '5')
  .parse()
  .opts<{ minutes: string; baselineMinutes: string; concurrency: string; sampleS: string }>()
const num = (name: string, v: string, min: number): number => {
  const n = Number(v)
  if (!Number.isFinite(n) || n < min)
    throw new Error(`${name} must be a number ≥ ${min}, got "${v}"`)
  return n
}
const minutes = num('--minutes', o.minutes, 0.1)
const baselineMinutes = num('--baseline-minutes', o.baselineMinutes, 0.1)
const concurrency = Math.trunc(num('--concurrency', o.concurrency, 1))
const sampleS = num('--sample-s', o.sampleS, 1)
const root = new URL('../../', import.meta.url).pathname

function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
  return m ? Number(m[1]) / 1024 : Number.NaN
}

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net')
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const a = s.address()
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0))
    })
  })
}

async function waitFor(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`the server exited (${child.exitCode})`)
    try {
      await fetch(url)
      return
    } catch {
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  throw new Error(`${url} never answered`)
}

interface Sample {
  t: number
  rss: number
  done: number
}

/** Drives `concurrency` loops of registrations for `ms`, sampling the server's RSS. */
async function soak(
  url: string,
  key: string,
  pid: number,
  ms: number,
): Promise<{ samples: Sample[]; errors: number }> {
  let done = 0
  let errors = 0
  const samples: Sample[] = [{ t: 0, rss: rssMb(pid), done: 0 }]
  const start = Date.now()
  const timer = setInterval(
    () => samples.push({ t: Date.now() - start, rss: rssMb(pid), done }),
    sampleS * 1000,
  )
  const loop = async () => {
    while (Date.now() - start < ms) {
      const body = JSON.stringify({
        p0: randomBytes(16).toString('hex'),
        wl3: randomBytes(300).toString('base64'),
      })
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body,
        })
        await res.arrayBuffer()
        if (res.status === 201) done++
        else errors++
      } catch {
        errors++
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, loop))
  clearInterval(timer)
  samples.push({ t: Date.now() - start, rss: rssMb(pid), done })
  return { samples, errors }
}

function report(name: string, idle: number, r: { samples: Sample[]; errors: number }): string[] {
  const lines = [
    `\n${name}: idle RSS ${idle.toFixed(1)} MB, ${r.samples.at(-1)!.done} registrations, ${r.errors} errors\n`,
  ]
  lines.push('| minute | registrations (cumulative) | RSS min MB | RSS max MB | RSS at end MB |')
  lines.push('| ---: | ---: | ---: | ---: | ---: |')
  const byMinute = new Map<number, Sample[]>()
  for (const s of r.samples.slice(1)) {
    const m = Math.ceil(s.t / 60_000) || 1
    byMinute.set(m, [...(byMinute.get(m) ?? []), s])
  }
  for (const [m, ss] of byMinute) {
    const rss = ss.map((s) => s.rss)
    lines.push(
      `| ${m} | ${ss.at(-1)!.done.toLocaleString('en')} | ${Math.min(...rss).toFixed(1)} | ${Math.max(...rss).toFixed(1)} | ${rss.at(-1)!.toFixed(1)} |`,
    )
  }
  // least-squares slope of RSS against registrations over the second half
  const half = r.samples.filter((s) => s.t >= r.samples.at(-1)!.t / 2)
  const n = half.length
  const mx = half.reduce((a, s) => a + s.done, 0) / n
  const my = half.reduce((a, s) => a + s.rss, 0) / n
  const cov = half.reduce((a, s) => a + (s.done - mx) * (s.rss - my), 0)
  const v = half.reduce((a, s) => a + (s.done - mx) ** 2, 0)
  lines.push(
    `\nslope over the second half: ${v > 0 ? ((cov / v) * 10_000).toFixed(2) : 'n/a'} MB per 10,000 registrations`,
  )
  return lines
}

// --- the core -------------------------------------------------------------------------
const data = mkdtempSync(join(tmpdir(), 'clavitor-soak-'))
const core = await openCore({ dataDir: data, protection: 'best-effort' })
const now = nowMicros()
core.db
  .prepare(
    "INSERT INTO customers (id, parent_id, level, email, created_at, updated_at) VALUES ('cus_soak', NULL, 1, 'soak@example.com', ?, ?)",
  )
  .run(now, now)
core.db
  .prepare(
    "INSERT INTO subscriptions (id, customer_id, status, currency_code, created_at, updated_at) VALUES ('sbs_soak', 'cus_soak', 'active', 'EUR', ?, ?)",
  )
  .run(now, now)
const vault = core.credentials.createVault({
  customerId: 'cus_soak',
  subscriptionId: 'sbs_soak',
  name: 'soak',
})
const key = core.credentials.createApiKey(vault.id).key
await core.close()

const port = await freePort()
const child = spawn(
  join(root, 'scripts/clavitor'),
  [
    'core',
    'serve',
    '--data',
    data,
    '--listen',
    `127.0.0.1:${port}`,
    '--reconcile-interval-ms',
    '0',
    '--rate-limit-key',
    '100000000',
    '--rate-limit-ip',
    '100000000',
  ],
  {
    stdio: ['ignore', 'ignore', 'inherit'],
  },
)
const lines: string[] = []
try {
  await waitFor(`http://127.0.0.1:${port}/healthz`, child)
  await new Promise((r) => setTimeout(r, 2000))
  const idle = rssMb(child.pid!)
  const r = await soak(
    `http://127.0.0.1:${port}/api/v1/credentials/register`,
    key,
    child.pid!,
    minutes * 60_000,
  )
  lines.push(...report(`core serve, concurrency ${concurrency}, ${minutes} min`, idle, r))
} finally {
  child.kill('SIGTERM')
  await new Promise((r) => child.once('exit', r))
}

// --- the baseline ---------------------------------------------------------------------
const base = spawn(
  process.execPath,
  [
    '--import',
    `file://${root}node_modules/tsx/dist/loader.mjs`,
    join(root, 'scripts/bench/soak-baseline.ts'),
    '0',
  ],
  {
    stdio: ['ignore', 'pipe', 'inherit'],
  },
)
try {
  const basePort = await new Promise<number>((resolve) =>
    base.stdout!.once('data', (b: Buffer) => resolve(Number(b.toString().trim()))),
  )
  const idle = rssMb(base.pid!)
  const r = await soak(`http://127.0.0.1:${basePort}/`, key, base.pid!, baselineMinutes * 60_000)
  lines.push(
    ...report(
      `baseline: bare node:http (same POSTs), concurrency ${concurrency}, ${baselineMinutes} min`,
      idle,
      r,
    ),
  )
} finally {
  base.kill('SIGTERM')
}
console.log(lines.join('\n'))
try {
  spawn('chattr', ['-R', '-i', '-a', data]).once('exit', () =>
    rmSync(data, { recursive: true, force: true }),
  )
} catch {
  rmSync(data, { recursive: true, force: true })
}
