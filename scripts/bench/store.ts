// npm run bench:store [-- --n 5000 --concurrency 64 --size 4096 --protection best-effort]
//
// Writes N blobs of 4 KiB through the store (signed, fsynced, linked, sealed, indexed) and,
// in the same run, through a bare loop of write + fsync + rename of the same payloads into
// the same folder layout ({root}/{shard}/{p0}/{name}). Prints durable writes per second,
// p50/p99 latency and peak RSS. A benchmark, not a test: figures go to docs/performance.md.
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { mkdir, open, rename } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Command, Option } from 'commander'
import { BlobStore, PROTECTIONS, type Protection } from '../../lib/store/index.js'

const program = new Command()
  .name('bench:store')
  .addOption(new Option('--n <n>', 'blobs to write').default('5000'))
  .addOption(new Option('--concurrency <c>', 'puts in flight against the store').default('256'))
  .addOption(new Option('--size <bytes>', 'payload size').default('4096'))
  .addOption(
    new Option('--max-batch <m>', 'StoreOptions.maxBatch: most puts per group').default('512'),
  )
  .addOption(new Option('--p0s <k>', 'distinct p0s the blobs spread over').default('1000'))
  .addOption(
    new Option('--protection <mode>', 'store protection')
      .choices(PROTECTIONS as string[])
      .default('best-effort'),
  )
  .addOption(new Option('--dir <dir>', 'work folder (default: a temp folder, removed afterwards)'))
  .parse()
const o = program.opts<{
  maxBatch: string
  n: string
  concurrency: string
  size: string
  p0s: string
  protection: Protection
  dir?: string
}>()
const N = Number(o.n)
const C = Number(o.concurrency)
const SIZE = Number(o.size)
const K = Number(o.p0s)
for (const [k, v] of Object.entries({ n: N, concurrency: C, size: SIZE, p0s: K })) {
  if (!Number.isInteger(v) || v < 1) {
    process.stderr.write(`bench:store: --${k} must be a positive integer\n`)
    process.exit(2)
  }
}

const work = o.dir ?? mkdtempSync(join(tmpdir(), 'clavitor-bench-store-'))
const p0s = Array.from({ length: K }, () => randomBytes(16).toString('hex'))
const payloads = Array.from({ length: N }, () => randomBytes(SIZE))

const pct = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
const rssMb = () => Math.round(process.resourceUsage().maxRSS / 1024)

interface Row {
  name: string
  n: number
  seconds: number
  lat: number[]
  rss: number
}

async function baseline(): Promise<Row> {
  const root = join(work, 'baseline', 'store')
  const staging = join(work, 'baseline', 'staging')
  await mkdir(staging, { recursive: true })
  for (let s = 0; s < 256; s++)
    await mkdir(join(root, s.toString(16).padStart(2, '0')), { recursive: true })
  const made = new Set<string>()
  const lat: number[] = []
  const t0 = performance.now()
  for (let i = 0; i < N; i++) {
    const s = performance.now()
    const p0 = p0s[i % K]!
    const dir = join(root, p0.slice(0, 2), p0)
    if (!made.has(dir)) {
      await mkdir(dir, { recursive: true })
      made.add(dir)
    }
    const name = `${String(Date.now() * 1000 + i).padStart(16, '0')}_${randomBytes(8).toString('hex')}.cla`
    const tmp = join(staging, name + '.tmp')
    const fh = await open(tmp, 'wx', 0o444)
    await fh.writeFile(payloads[i]!)
    await fh.sync()
    await fh.close()
    await rename(tmp, join(dir, name))
    lat.push(performance.now() - s)
  }
  return {
    name: 'bare loop: write + fsync + rename (serial)',
    n: N,
    seconds: (performance.now() - t0) / 1000,
    lat,
    rss: rssMb(),
  }
}

async function store(concurrency: number, n: number, label: string): Promise<Row> {
  const dataDir = join(work, `store-c${concurrency}`)
  const s = await BlobStore.init({
    dataDir,
    maxBatch: Number(o.maxBatch),
    protection: o.protection,
    onWarning: (m) => process.stderr.write(`warning: ${m}\n`),
  })
  const lat: number[] = []
  let next = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++
        const st = performance.now()
        await s.put(p0s[i % K]!, payloads[i]!)
        lat.push(performance.now() - st)
      }
    }),
  )
  const seconds = (performance.now() - t0) / 1000
  const status = s.status()
  await s.close()
  if (status.blobs !== n) throw new Error(`store holds ${status.blobs} blobs, expected ${n}`)
  const sealed = status.protection.sealing ? 'sealed' : 'NOT sealed'
  return { name: `${label} (${sealed}, signed, indexed)`, n, seconds, lat, rss: rssMb() }
}

try {
  const rows: Row[] = []
  rows.push(await baseline())
  rows.push(await store(C, N, `store.put, concurrency ${C}`))
  if (C !== 16) rows.push(await store(16, Math.min(N, 2000), 'store.put, concurrency 16'))
  rows.push(await store(1, Math.min(N, 1000), 'store.put, concurrency 1'))
  const head = ['', 'blobs', 'puts/s', 'p50 ms', 'p99 ms', 'peak RSS MB']
  const lines = rows.map((r) => {
    const sorted = [...r.lat].sort((a, b) => a - b)
    return [
      r.name,
      String(r.n),
      (r.n / r.seconds).toFixed(0),
      pct(sorted, 50).toFixed(2),
      pct(sorted, 99).toFixed(2),
      String(r.rss),
    ]
  })
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)))
  const fmt = (cells: string[]) =>
    '| ' +
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ') +
    ' |'
  process.stdout.write(
    `N=${N} payload=${SIZE} B p0s=${K} protection=${o.protection} node ${process.version}\n` +
      fmt(head) +
      '\n' +
      '|' +
      widths
        .map((w, i) => (i === 0 ? '-' : '').padEnd(w + 1, '-') + (i === 0 ? '-' : ':'))
        .join('|') +
      '|\n' +
      lines.map(fmt).join('\n') +
      '\n',
  )
  const ratio = rows[1]!.n / rows[1]!.seconds / (rows[0]!.n / rows[0]!.seconds)
  process.stdout.write(`store / bare loop = ${ratio.toFixed(2)}x\n`)
} finally {
  if (!o.dir) {
    try {
      execFileSync('chattr', ['-R', '-i', '-a', work], { stdio: 'ignore' })
    } catch {
      // nothing sealed
    }
    rmSync(work, { recursive: true, force: true })
  }
}
