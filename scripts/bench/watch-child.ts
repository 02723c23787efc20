// One variant of bench:watch in its own process (RSS is per process): opens the store at
// argv[3] and runs argv[2] — none (the store alone), tree-watch (lib/pop-sync/watch.ts,
// then one sweep of the whole tree) or chokidar (the per-folder watch it replaced, with the
// options it used). Prints one JSON line.
import { sep } from 'node:path'
import { watch } from 'chokidar'
import { BlobStore } from '../../lib/store/index.js'
import { TreeWatch } from '../../lib/pop-sync/watch.js'

const [variant, dataDir] = process.argv.slice(2) as [string, string]
const rssMb = () => Math.round(process.memoryUsage().rss / 1024 / 1024)
const store = await BlobStore.open({ dataDir, protection: 'off' })
const out: Record<string, unknown> = { variant, rss_open_mb: rssMb() }
let t0 = performance.now()
if (variant === 'tree-watch') {
  const w = new TreeWatch({ popId: 'bench', store, audit: () => undefined, sweepMs: 0 })
  await w.start()
  out.ready_s = (performance.now() - t0) / 1000
  out.rss_ready_mb = rssMb()
  t0 = performance.now()
  const r = await w.sweep({ full: false })
  out.sweep_s = (performance.now() - t0) / 1000
  out.sweep_stats = r.stats
  out.rss_after_sweep_mb = rssMb()
  out.peak_rss_mb = Math.round(process.resourceUsage().maxRSS / 1024)
  await w.close()
} else if (variant === 'chokidar') {
  const w = watch(store.root, {
    ignoreInitial: true,
    persistent: true,
    ignored: (p: string) => p.includes(`${sep}.`),
    awaitWriteFinish: false,
  })
  await new Promise<void>((resolve, reject) => {
    w.once('ready', () => resolve())
    w.once('error', reject)
  })
  out.ready_s = (performance.now() - t0) / 1000
  out.rss_ready_mb = rssMb()
  out.peak_rss_mb = Math.round(process.resourceUsage().maxRSS / 1024)
  await w.close()
} else {
  out.rss_ready_mb = rssMb()
  out.peak_rss_mb = Math.round(process.resourceUsage().maxRSS / 1024)
}
await store.close()
process.stdout.write(JSON.stringify(out) + '\n')
