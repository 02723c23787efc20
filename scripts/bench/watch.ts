// npm run bench:watch [-- --p0s 100000]
//
// Memory of watching a POP's sealed tree, per 100,000 P0s: a store of N P0s (one blob
// each, protection off so the fill is quick) is opened in a fresh process three times:
// the store alone (the baseline), with lib/pop-sync/watch.ts (live watches on the root and
// the 256 shard folders, then one sweep of the whole tree), and with chokidar watching every
// folder (what watch.ts replaced). Prints RSS of each and the watcher's share per 100,000
// P0s. A benchmark, not a test: figures go to docs/performance.md.
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Command, Option } from 'commander'
import { BlobStore } from '../../lib/store/index.js'

const o = new Command()
  .name('bench:watch')
  .addOption(new Option('--p0s <n>', 'P0 folders in the store').default('100000'))
  .addOption(new Option('--variants <list>', 'comma list').default('none,tree-watch,chokidar'))
  .addOption(new Option('--dir <dir>', 'work folder (default: a temp folder, removed afterwards)'))
  .parse()
  .opts<{ p0s: string; variants: string; dir?: string }>()
const N = Number(o.p0s)
if (!Number.isInteger(N) || N < 1) {
  process.stderr.write('bench:watch: --p0s must be a positive integer\n')
  process.exit(2)
}
const here = dirname(fileURLToPath(import.meta.url))
const work = o.dir ?? mkdtempSync(join(tmpdir(), 'clavitor-bench-watch-'))
const dataDir = join(work, 'store')
try {
  const t0 = performance.now()
  // a --dir that holds a store from an earlier run is measured as it is (the fill is slow)
  const reuse = BlobStore.isInitialized(dataDir)
  const store = await BlobStore.init({ dataDir, protection: 'off' })
  let next = reuse ? N : 0
  await Promise.all(
    Array.from({ length: 256 }, async () => {
      while (next < N) {
        next++
        await store.put(randomBytes(16).toString('hex'), randomBytes(256))
      }
    }),
  )
  const held = store.index.count()
  await store.close()
  if (held !== N) throw new Error(`the store holds ${held} blobs, not --p0s ${N}`)
  process.stderr.write(`filled ${N} P0s in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`)
  const rows: Array<Record<string, number | string>> = []
  for (const v of o.variants.split(',')) {
    try {
      const line = execFileSync(
        join(here, '..', 'clavitor-ts'),
        [join(here, 'watch-child.ts'), v, dataDir],
        { encoding: 'utf8', maxBuffer: 1 << 20, stdio: ['ignore', 'pipe', 'pipe'] },
      )
      rows.push(JSON.parse(line.trim().split('\n').pop()!) as Record<string, number | string>)
      process.stderr.write(`${line.trim()}\n`)
    } catch (err) {
      // chokidar watches every file and folder: past the inotify limit it cannot start
      const msg = String((err as { stderr?: string }).stderr ?? err)
      const why = /ENOSPC/.test(msg) ? 'failed: ENOSPC (inotify watch limit)' : 'failed'
      rows.push({ variant: v, error: why })
      process.stderr.write(`${v}: ${why}\n`)
    }
  }
  const base = rows.find((r) => r.variant === 'none')
  const per100k = (r: Record<string, number | string>) =>
    base ? (((r.peak_rss_mb as number) - (base.peak_rss_mb as number)) * 100_000) / N : NaN
  const head = [
    '',
    'ready s',
    'RSS ready MB',
    'peak RSS MB',
    'watcher MB per 100,000 P0s',
    'sweep s',
  ]
  const fmt = (x: unknown, d = 1) => (typeof x === 'number' ? x.toFixed(d) : '–')
  const lines = rows.map((r) => [
    String(r.variant),
    fmt(r.ready_s),
    fmt(r.rss_ready_mb, 0),
    fmt(r.peak_rss_mb, 0),
    r.error ? String(r.error) : r.variant === 'none' ? '(baseline)' : fmt(per100k(r), 0),
    fmt(r.sweep_s),
  ])
  process.stdout.write(`\nbench:watch, ${N} P0s (one blob each)\n`)
  process.stdout.write(`| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|\n`)
  for (const l of lines) process.stdout.write(`| ${l.join(' | ')} |\n`)
} finally {
  if (!o.dir) rmSync(work, { recursive: true, force: true })
}
